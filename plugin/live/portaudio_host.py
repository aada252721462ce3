"""The PortAudio process of the live bridge: an input stream whose callback copies each block
into shared memory and returns. Nothing else runs in this process.

    python -m sendlearn.plugin.live.portaudio_host CONFIG_JSON     # started by portaudio_bridge.PortAudioBridge

The twin of ``jack_host.py`` for any audio device PortAudio reaches (CoreAudio, WASAPI, ALSA,
PipeWire's or JACK's own host API), writing the same ring (plugin/live/ring.py), so the
capturing process (plugin/live/bridge.py, portaudio_bridge.py) serves both unchanged. Per block the callback
writes the device's float32 frames as PortAudio delivered them, and as the block's clock the
device frame of its first frame, kept from PortAudio's input timestamps (plugin/live/adc_clock.py):
frames the device lost (an overflow) move that clock on, and the capturing process turns the
jump into a gap, as it does with missed JACK cycles. ``paInputOverflow`` flags are counted.
No transport: the playhead comes from elsewhere (``--bpm``/``--meter`` for now).

A device that stops on its own (unplugged, its server gone) is noticed by the main thread,
which wakes twice a second: PortAudio says the stream is no longer active, or no block came
for ``STALL_SECONDS`` (measured: PortAudio's JACK host API keeps calling a stream active after
the server was killed, and simply stops calling back); the ring is marked stopped with ``Control.DEVICE_LOST`` and the
reason goes into the closing line, so the stream ends whole up to the last block.

Talking to the parent, as ``jack_host.py`` does: one JSON line when running, or
``{"error": ..., "usage": true}`` for a device, channel count or rate that cannot be used (the
parent exits 2 with it), then a ``stop`` line on stdin, then one JSON line of closing figures.

PortAudio's JACK host API shares a process badly with another Python JACK client (measured:
``Pa_StartStream`` timed out beside a JACK-Client client), one more reason this runs alone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import numpy as np
import sounddevice as sd

from sendlearn.errors import UsageError
from sendlearn.plugin.lifetime import die_with_parent
from sendlearn.plugin.live.adc_clock import AdcClock
from sendlearn.plugin.live.host_process import MIN_SLOT_FRAMES, STOP_SIGNALS, settle, stop_on_command, tell_parent
from sendlearn.plugin.live.ring import TIMING_SLOTS, Control, Int, Layout, RunState, SharedRings, slots_for
from sendlearn.plugin.live.virtual_port import FRAME_MASK

COMMON_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000)
JACK_HOST_API = "JACK Audio Connection Kit"
WATCH_SECONDS = 0.5  # how often the main thread checks that the device still runs
STALL_SECONDS = 2.0  # no block for this long: the device is gone (PortAudio may still call it active)


class DeviceProblem(UsageError):
    """A device, channel count or rate the command line asked for and PortAudio cannot give
    (it reaches the parent as the ready line's ``usage`` error: exit 2)."""


def input_devices() -> list[str]:
    """``index: name (host API, N in, rate Hz)`` of every device with inputs."""
    apis = sd.query_hostapis()
    return [f"{d['index']}: {d['name']} ({apis[d['hostapi']]['name']}, {d['max_input_channels']} in, "
            f"{d['default_samplerate']:g} Hz)" for d in sd.query_devices() if d["max_input_channels"] > 0]


def list_devices() -> list[str]:
    """Every device PortAudio sees, with its host API, channels, default rate and (for inputs)
    the common rates it takes; one line saying there are none when there are none.

    PortAudio lists devices when it starts, so it is restarted here to list them as they are
    now, and left stopped: its JACK host API asserts (an abort) if it is still running when the
    process exits after the JACK server has gone."""
    while sd._initialized:  # sounddevice started it on import; these are its own (private) calls
        sd._terminate()
    sd._initialize()
    try:
        apis = sd.query_hostapis()
        devices = sd.query_devices()
        if not len(devices):
            return [f"no audio devices ({sd.get_portaudio_version()[1]}; host APIs: "
                    + (", ".join(api["name"] for api in apis) or "none") + ")"]
        lines = []
        for d in devices:
            rates = [r for r in COMMON_RATES if d["max_input_channels"] and _takes(d["index"], 1, r)]
            lines.append(f"{d['index']}: {d['name']} ({apis[d['hostapi']]['name']}): {d['max_input_channels']} in, "
                         f"{d['max_output_channels']} out, default {d['default_samplerate']:g} Hz"
                         + (f", takes {', '.join(str(r) for r in rates)} Hz" if rates else ""))
        return lines
    finally:
        sd._terminate()


def resolve(device: str | None, channels: int | None, rate: int | None) -> tuple[int, int, int]:
    """(device index, channels, rate) for the command line's choice, or ``DeviceProblem``."""
    try:
        index = sd.default.device[0] if device is None else (int(device) if device.isdigit() else device)
        info = sd.query_devices(index, "input")
    except (ValueError, sd.PortAudioError) as exc:
        there = input_devices()
        raise DeviceProblem(f"audio device {device or '(default)'!r}: {str(exc).splitlines()[0]}; input devices: "
                            + ("; ".join(there) if there else "none")) from None
    if not isinstance(info, dict):
        raise DeviceProblem("PortAudio described no device")
    name = f"{info['name']!r}"
    most = int(info["max_input_channels"])
    channels = most if channels is None else channels
    if not 1 <= channels <= most:
        raise DeviceProblem(f"audio device {name}: {channels} channels asked for, it has {most} inputs")
    rate = int(info["default_samplerate"]) if rate is None else rate
    if not _takes(info["index"], channels, rate):
        takes = [r for r in COMMON_RATES if _takes(info["index"], channels, r)]
        raise DeviceProblem(f"audio device {name} refuses {rate} Hz; it takes "
                            + (", ".join(f"{r} Hz" for r in takes) if takes else "none of the common rates"))
    return int(info["index"]), channels, rate


def _takes(index: int, channels: int, rate: int) -> bool:
    try:
        sd.check_input_settings(device=index, channels=channels, samplerate=rate, dtype="float32")
    except (ValueError, sd.PortAudioError):
        return False
    return True


class PortAudioWriter:
    """An input stream of ``channels`` channels of ``device`` at ``rate``, ``block_size`` frames a
    callback, written into ``rings``."""

    def __init__(self, *, device: str | None = None, channels: int | None = None, rate: int | None = None,
                 block_size: int = 256) -> None:
        self.index, channels, self.rate = resolve(device, channels, rate)
        self.block_size = block_size
        # opened before the ring exists, so a device that refuses leaves no file in /dev/shm
        self.stream = sd.InputStream(device=self.index, channels=channels, samplerate=self.rate,
                                     blocksize=block_size, dtype="float32", callback=self._process)
        layout = Layout(channels, max(MIN_SLOT_FRAMES, block_size), slots_for(block_size, self.rate))
        self.rings = SharedRings.create(layout)
        periods = self.rings.periods
        self._ints, self._audio = periods["ints"], periods["audio"]
        self._control, self._times = self.rings.control, self.rings.times
        info = sd.query_devices(self.index)
        self.host_api = sd.query_hostapis(info["hostapi"])["name"]
        self.name = f"{info['name']} ({self.host_api})"
        # JACK's stamps are its DLL estimate, not the frames: see adc_clock.py
        self.clock = AdcClock(self.rate, block_size, trusted=self.host_api != JACK_HOST_API)
        self._head = self._cycles = 0
        self._drops = self._drop_frames = 0
        self._ended = False
        self.last_error: str | None = None
        self._blank = [0] * len(Int)  # no transport, no JACK MIDI, never freewheeling

    # -- the audio thread --------------------------------------------------------------

    def _process(self, indata: np.ndarray, frames: int, when: Any, status: sd.CallbackFlags) -> None:
        started = time.perf_counter_ns()
        control = self._control
        try:
            if status.input_overflow:
                control[Control.INPUT_OVERFLOWS] += 1
            if self.clock.advance(when.inputBufferAdcTime, frames):
                control[Control.CLOCK_GAPS] += 1
            control[Control.CLOCK_JUMPS] = self.clock.jumps
            slots = self.rings.layout.slots
            if self._ended:
                pass
            elif self._head - int(control[Control.TAIL]) < slots and frames <= self.rings.layout.max_frames:
                slot = self._head % slots
                self._audio[slot, :, :frames] = indata.T  # the device's frames as PortAudio gave them
                header = self._blank  # one store for the whole header, in ring.Int's order
                header[Int.CYCLE], header[Int.ENTRY_NS], header[Int.FRAMES] = self.clock.first & FRAME_MASK, started, frames
                header[Int.DROPPED_BEFORE], header[Int.DROPPED_FRAMES_BEFORE] = self._drops, self._drop_frames
                # where the first frame lies before "now" on the device's clock: the capturing
                # process places MIDI arrivals on the stream with it (plugin/live/arrival_clock.py)
                header[Int.ADC_LAG_NS] = int((when.currentTime - when.inputBufferAdcTime) * 1e9)
                self._ints[slot] = header
                self._drops = self._drop_frames = 0
                self._head += 1
                control[Control.HEAD] = self._head  # last: the reader may take the slot now
            else:
                control[Control.DROPPED_PERIODS] += 1
                self._drops += 1
                self._drop_frames += frames
        except Exception as exc:  # never raise into PortAudio: it would end the stream
            control[Control.ERRORS] += 1
            self.last_error = repr(exc)
        self._times[self._cycles % TIMING_SLOTS] = time.perf_counter_ns() - started
        self._cycles += 1
        control[Control.CYCLES] = self._cycles

    # -- control -----------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        settle()
        self.stream.start()
        self._control[Control.STATE] = RunState.RUNNING
        channels = self.rings.layout.channels
        return {
            "ring": str(self.rings.path), "slots": self.rings.layout.slots, "max_frames": self.rings.layout.max_frames,
            "sample_rate": self.rate, "block_size": self.block_size, "client": self.name,
            "inputs": [f"{self.name}:{i + 1}" for i in range(channels)], "outputs": [],
            "midi_input": None, "timebase_master": False, "virtual_port": None, "margin": None,
            "host_api": self.host_api, "timestamps_trusted": self.clock.trusted,
        }

    def lost(self, idle_seconds: float) -> str | None:
        """Why the stream stopped without being told to (the device went away), or None."""
        if self._ended:
            return None
        if idle_seconds >= STALL_SECONDS:
            return f"delivered no audio for {idle_seconds:.1f} s"
        if not self.stream.active:
            return "stopped on its own"
        return None

    def stop(self, reason: str | None = None) -> dict[str, Any]:
        self._ended = True
        if reason is None:  # a lost device is left alone: aborting a stream whose JACK server died hangs
            try:
                self.stream.abort()
                self.stream.close()
            except sd.PortAudioError as exc:
                reason = str(exc)
        control = self._control
        control[Control.DROPPED_AT_END] = self._drops
        control[Control.DROPPED_FRAMES_AT_END] = self._drop_frames
        if reason is not None:
            control[Control.DEVICE_LOST] = 1
        control[Control.STATE] = RunState.STOPPED
        return {"cycles": self._cycles, "last_error": self.last_error, "device_lost": reason,
                "input_overflows": int(control[Control.INPUT_OVERFLOWS]), "clock_gaps": self.clock.gaps,
                "clock_missed_frames": self.clock.missed_frames, "clock_jumps": self.clock.jumps,
                "clock_jump_frames": self.clock.jump_frames}


def main(argv: list[str] | None = None) -> int:
    config = json.loads((argv or sys.argv)[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    die_with_parent()
    try:
        writer = PortAudioWriter(**config)
    except DeviceProblem as exc:
        tell_parent({"error": str(exc), "usage": True})
        return 2
    except (sd.PortAudioError, OSError, ValueError) as exc:
        tell_parent({"error": f"cannot open the audio device: {exc}"})
        return 1
    try:
        ready = writer.start()
    except sd.PortAudioError as exc:
        writer.rings.unlink()
        tell_parent({"error": f"cannot start the audio device {writer.name}: {exc}"})
        return 1
    tell_parent(ready)

    stop_on_command()
    closing: dict[str, Any] | None = None
    cycles, since = -1, time.monotonic()
    while signal.sigtimedwait(STOP_SIGNALS, WATCH_SECONDS) is None:
        now = time.monotonic()
        if writer.rings.count(Control.CYCLES) != cycles:
            cycles, since = writer.rings.count(Control.CYCLES), now
        why = writer.lost(now - since)
        if why is not None:  # marks the ring stopped: the parent ends the stream whole, then says stop
            closing = writer.stop(f"the audio device {writer.name} {why} (gone, or its server ended)")
            signal.sigwait(STOP_SIGNALS)
            break
    if closing is None:
        closing = writer.stop()
    tell_parent(closing)
    os._exit(0)  # not Pa_Terminate at exit: its JACK host API asserts when the server has gone


if __name__ == "__main__":
    sys.exit(main())
