"""The playhead from Ableton Link (``--clock link``): the Link session's tempo, beat at
``--quantum`` and start/stop, derived on the stream's own clock.

Link is read through aalink (which needs a running asyncio loop: it gets one on a thread of its
own here). That thread samples the session every ``SAMPLE_SECONDS`` as ``(monotonic ns, beat,
tempo, playing)``, the moment read just before and after the beat and the sample kept only
when the two are within ``PAIR_NS`` (under load the GIL or the CPU came between them for
milliseconds: measured here, beats 5 to 25 ms behind Link's); a block's playhead is the session at the moment its first frame was at the
ADC (arrival_clock.py's ``StreamClock``: the same estimate MIDI is placed by), extrapolated
from the last sample taken by then at that sample's tempo. So the consumer running late (a
loaded machine) does not move a beat, a tempo change lands within a sample interval of when
Link made it, and so does a start or stop.

- ``ppq`` is Link's beat (a quarter note, as DAWs count Link beats) at the quantum: peers agree
  on its phase within the quantum, not on the beat number itself;
- the bar and beat in the bar come from ``--meter``; the quantum defaults to that bar's length,
  so bar lines are where every peer's quantum starts;
- ``playing`` is Link's start/stop state (start/stop sync on);
- ``seconds`` is the beat at the current tempo, as for MIDI clock.

No output latency of the DAW is taken off: the beat stored is the one Link's timeline gives for
the moment the audio reached the input.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from typing import Any

from sendlearn.capture import Playhead
from sendlearn.errors import MissingExtra, UsageError

SAMPLE_SECONDS = 0.002
PAIR_NS = 200_000  # a beat is paired with the moment it was read only if reading took at most this
PAIR_TRIES = 20
KEEP = 10_000  # samples kept: 20 s, longer than any lag of the capture behind the device


def check_quantum(quantum: float | None) -> None:
    """``--quantum``: beats a Link phase cycle spans (the bar length), finite and positive."""
    if quantum is not None and not (math.isfinite(quantum) and 0 < quantum <= 256):
        raise UsageError(f"--quantum {quantum}: give the bar length in beats, more than 0 and at most 256")


class LinkClock:
    """Joins the Link session on construction; ``playhead(sample, ns)`` is the session at
    monotonic time ``ns``; ``close()`` leaves it."""

    def __init__(self, bpm: float, meter: tuple[int, int], quantum: float | None = None) -> None:
        check_quantum(quantum)
        try:
            import aalink
        except ImportError as exc:
            raise MissingExtra("aalink", "--clock link") from exc
        self.meter = meter
        self.quantum = quantum if quantum is not None else meter[0] * 4.0 / meter[1]
        self._samples: deque[tuple[int, float, float, bool]] = deque(maxlen=KEEP)  # (ns, beat, tempo, playing)
        self._lock = threading.Lock()  # the sampler appends while the capture reads
        self.peers_max = 0
        self.tempo_changes = 0
        self.starts = self.stops = 0
        self.gap_max_ns = 0  # the longest the sampler went without a sample (a starved thread)
        self.pairs_retried = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sendlearn-link", daemon=True)
        self._thread.start()

        async def join() -> Any:
            link = aalink.Link(bpm)
            link.quantum = self.quantum
            link.start_stop_sync_enabled = True
            link.enabled = True
            return link

        self._link = asyncio.run_coroutine_threadsafe(join(), self._loop).result(timeout=10)
        while not self._samples:
            self._sample()
        self._sampler = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    def _sample(self) -> None:
        link = self._link
        for _ in range(PAIR_TRIES):  # the beat and the moment it was for, read back to back
            before = time.perf_counter_ns()
            beat = float(link.beat)
            after = time.perf_counter_ns()
            if after - before <= PAIR_NS:
                break
            self.pairs_retried += 1  # another thread (the GIL) or the CPU came between: not a pair
        else:
            return
        now = (before + after) // 2
        tempo, playing = float(link.tempo), bool(link.playing)
        if self._samples:
            last_at, _, last_tempo, last_playing = self._samples[-1]
            self.tempo_changes += tempo != last_tempo
            self.starts += playing and not last_playing
            self.stops += last_playing and not playing
            self.gap_max_ns = max(self.gap_max_ns, now - last_at)
        self.peers_max = max(self.peers_max, int(link.num_peers))
        with self._lock:
            self._samples.append((now, beat, tempo, playing))

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def playhead(self, ns: float) -> Playhead:
        """The Link session's playhead at monotonic time ``ns``."""
        with self._lock:  # the latest sample taken by then (blocks come a few samples behind)
            found = next((sample for sample in reversed(self._samples) if sample[0] <= ns), self._samples[0])
        at, beat, tempo, playing = found
        ppq = beat + (ns - at) * tempo / 60e9
        num, den = self.meter
        per_bar = num * 4.0 / den
        bar = math.floor(ppq / per_bar)
        return Playhead(seconds=ppq * 60.0 / tempo, ppq=ppq, bpm=tempo, ts_num=num, ts_den=den, bar=bar + 1,
                        beat=(ppq - bar * per_bar) * den / 4.0 + 1.0, playing=playing)

    def figures(self) -> dict[str, Any]:
        """What stream.json's ``sender`` says of the Link session."""
        return {"playhead_source": f"ableton link (quantum {self.quantum:g})", "link_peers_max": self.peers_max,
                "link_tempo_changes": self.tempo_changes, "link_starts": self.starts, "link_stops": self.stops,
                "link_sample_ms": SAMPLE_SECONDS * 1e3, "link_sample_gap_max_ms": round(self.gap_max_ns / 1e6, 1),
                "link_samples_retried": self.pairs_retried}

    def close(self) -> None:
        """Leave the session and stop the loop's thread."""
        if not self._thread.is_alive():
            return

        async def leave() -> None:
            self._sampler.cancel()
            self._link.enabled = False

        try:
            asyncio.run_coroutine_threadsafe(leave(), self._loop).result(timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
