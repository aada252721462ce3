from __future__ import annotations

import numpy as np

from sendlearn.capture import Block, MidiEvent, ParamChange, Playhead


def make_audio(channels: int, frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (channels, frames)).astype(np.float32)


def make_block(seq: int = 0, frames: int = 512, channels: int = 2, start: int | None = None, **kw) -> Block:
    defaults = dict(
        playhead=lambda: Playhead(seconds=seq * frames / 48000, bpm=120.0, playing=True),
        midi=lambda: (MidiEvent(0, b"\x90\x3c\x64"), MidiEvent(frames - 1, b"\x80\x3c\x00")),
        params=lambda: (ParamChange(3, "cutoff", 0.25),),
        audio=lambda: make_audio(channels, frames, seq),
    )
    defaults = {k: kw[k] if k in kw else make() for k, make in defaults.items()}
    return Block("sess", "keys", seq, seq * frames if start is None else start, frames, 48000, channels, **defaults)




def read_stream(data_dir, session: str, stream: str) -> dict:
    """A written stream read back with the libraries a user would use."""
    import json
    from pathlib import Path

    import mido
    import pyarrow.parquet as pq
    import soundfile

    folder = Path(data_dir) / "sessions" / session / stream
    info = json.loads((folder / "stream.json").read_text())
    audio, rate = soundfile.read(folder / info["audio"]["file"], dtype="float32", always_2d=True)
    return {
        "folder": folder, "info": info, "audio": audio.T.copy(), "rate": rate,
        "events": pq.read_table(folder / "events.parquet"),
        "blocks": pq.read_table(folder / "blocks.parquet"),
        "params": pq.read_table(folder / "params.parquet"),
        "midi": mido.MidiFile(folder / "notes.mid"),
    }
