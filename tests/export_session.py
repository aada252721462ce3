"""The data directory the export and report tests read, and the check every format's reader answers to.

It holds the 4-track ``band`` session of dataset_session.py (rendered through the real chain; float32
WAV; every window flagged: its ``quiet`` track is silent while it plays) and a ``pcm`` session sent
through the real sender and receiver at 16-bit (stereo) and 24-bit (mono): FLAC sources, and windows
with no flag. ``sendlearn sequences`` cuts both into 2 s windows with 0.5 s overlap (5 + 2 windows).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dataset_session import OVERLAP, WINDOW, render_session
from sendlearn.capture import Playhead, StreamInfo
from sendlearn.cli.main import main
from sendlearn.dataset import Dataset
from sendlearn.dataset.windows import Window
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import Quality
from sendlearn.transport.sender import Sender

PCM_BLOCKS, BLOCK, RATE = 340, 512, 48000  # 3.6 s: two 2 s windows
PCM_STREAMS = {"s16": (Quality.PCM16, 2, "PCM_16"), "s24": (Quality.PCM24, 1, "PCM_24")}
MESSAGES = [b"\x90\x3c\x64", b"\x80\x3c\x00", b"\xb0\x40\x7f", b"\xe0\x00\x50", b"\xf0\x7e\x7f\x09\x01\xf7"]


def send_pcm(data_dir: Path) -> None:
    """The ``pcm`` session: noise at half scale, a few MIDI events and an automation lane per block."""
    with ReceiverThread(data_dir) as receiver:
        for seed, (name, (quality, channels, _)) in enumerate(PCM_STREAMS.items()):
            info = StreamInfo("pcm", name, RATE, channels, BLOCK)
            processor = CaptureProcessor.for_stream(info, realtime=False)
            sender = Sender(receiver.url, info, processor.handoff, quality=quality).start()
            rng = np.random.default_rng(seed)
            audio = rng.uniform(-0.5, 0.5, (channels, PCM_BLOCKS * BLOCK)).astype(np.float32)
            for i in range(PCM_BLOCKS):
                start = i * BLOCK
                ppq = start / RATE * 2.0
                playhead = Playhead(seconds=start / RATE, ppq=ppq, bpm=120.0, ts_num=3, ts_den=4,
                                    bar=int(ppq // 3) + 1, beat=ppq % 3 + 1.0, playing=True)
                midi = [(int(o), MESSAGES[(i + k) % len(MESSAGES)]) for k, o in
                        enumerate(sorted(rng.choice(BLOCK, size=2, replace=False).tolist()))]
                processor.process(audio[:, start:start + BLOCK], midi, playhead, [(7, "gain", i / PCM_BLOCKS)])
            sender.close(timeout=60)


def make_data(root: Path) -> Path:
    """``root/data`` with both sessions and their sequences (2 s windows, 0.5 s overlap)."""
    data_dir = root / "data"
    shutil.copytree(render_session(root.parent / "band"), data_dir)
    send_pcm(data_dir)
    assert main(["sequences", "--data-dir", str(data_dir), "--window", str(WINDOW), "--overlap", str(OVERLAP),
                 "--min-events", "3", "--workers", "2", "--json"]) == 0
    return data_dir


def truth(data_dir: Path, include_flagged: bool = True) -> dict[tuple[str, str, int], tuple[Window, str]]:
    """(session, stream, window) -> the window as ``sendlearn.dataset`` reads it."""
    dataset = Dataset(data_dir)
    return {(s, stream, w.index): (w, stream) for s in dataset.sessions() for w in dataset.windows(s)
            for stream in w.streams if include_flagged or not w.flags}


def check_sample(got: dict[str, Any], window: Window, stream: str) -> None:
    """``got``, one exported sample read back by a format's own library, is ``window``'s ``stream``:
    audio bit for bit, events exact, playhead, automation, features and flags equal."""
    source = window.dataset.stream(window.session, stream)
    assert (got["session"], got["stream"], got["window"]) == (window.session, stream, window.index)
    assert (got["start_sample"], got["frames"], got["sample_rate"]) == (window.start_sample, window.frames,
                                                                       window.sample_rate)
    assert got["frames_valid"] == window.frames_valid <= window.frames
    audio = window.audio(stream)
    assert got["audio"].dtype == np.float32 and got["audio"].shape == audio.shape
    assert got["audio"].tobytes() == np.ascontiguousarray(audio).tobytes()
    if "audio_subtype" in got:
        assert got["audio_subtype"] == source.info["audio"]["subtype"]
    events = window.events(stream)
    assert list(got["midi_sample"]) == events["sample"].to_pylist()
    assert [bytes(d) for d in got["midi_data"]] == events["data"].to_pylist()
    if "midi_timing_error" in got:
        assert list(got["midi_timing_error"]) == events["timing_error_samples"].to_pylist()
    playhead = window.playhead(stream)
    for name, value in got["playhead"].items():
        assert value == getattr(playhead, name), name
    assert set(got["playhead"]) >= {"seconds", "ppq", "bpm", "ts_num", "ts_den", "bar", "beat", "playing"}
    blocks = window.blocks(stream)
    for name, values in got["timeline"].items():
        assert list(values) == blocks[name].to_pylist(), name
    params = window.params(stream)
    for name, values in got["params"].items():
        assert list(values) == params[name].to_pylist(), name
    features = window.features(stream)
    assert sorted(got["features"]) == sorted(features)
    for name, array in features.items():
        mine = np.asarray(got["features"][name])
        assert mine.dtype == array.dtype and mine.shape == array.shape and np.array_equal(mine, array), name
    assert list(got["flags"]) == list(window.flags)
