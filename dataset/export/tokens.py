"""``sendlearn export tokens``: miditok tokens of every window, each token tied to its sample (docs/export.md, "tokens").

    OUT/README.md                            dataset card: the tokenizer, its time grid in samples, the splits
    OUT/tokenizer.json                       miditok's own saved parameters: miditok.REMI(params="OUT/tokenizer.json")
    OUT/data/{split}-00000-of-00001.parquet  one row per (session, stream, window), or per window with
                                             --merge-streams, in its session's split (train, validation, test)

Each window's Standard MIDI File (``sendlearn.dataset.window_midi``) is read by symusic, preprocessed
and tokenized by miditok. ``token_sample`` is worked out from miditok's own events (each token's
``Event`` keeps its type, value, program and time in the preprocessed score's ticks): a token of a
note (its pitch, and the program, velocity, duration and microtiming tokens miditok writes with it)
gets the exact sample of that note's onset (a note-off token: its end), matched among the window's
notes of that pitch by the nearest onset; a tempo, meter, pedal, pitch-bend or control token gets
the captured sample of the nearest such event (a tempo or meter change: where the window's clock puts
it; none left: its tick taken back through the tempo map, exact to the grid); a token that
carries no event (bar, position, time shift, rest, family, pad...) gets -1. Compound tokens (CPWord,
Octuple) get their note's sample, or -1.

Rows are written as windows come, in row groups, one window's data held at a time; files are named
``.part`` until the end, so a stopped export leaves nothing. Every row is in its session's split
(``sendlearn sequences --split``; the ``split`` column and the per-split file names).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import miditok
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import symusic

from sendlearn.dataset.facade import Dataset
from sendlearn.dataset.splits import SPLITS
from sendlearn.dataset.window_midi import WindowClock, WindowMidi, merged_midi, window_midi
from sendlearn.errors import UsageError

from .samples import Plan

TOKENIZERS = ("REMI", "TSD", "MIDILike", "Structured", "CPWord", "Octuple", "MMM", "PerTok")
# miditok's own defaults leave these off; a window's tempo, meter, pedal, bends and programs are data
DEFAULT_CONFIG: dict[str, Any] = {"use_tempos": True, "use_time_signatures": True, "use_sustain_pedals": True,
                                  "use_pitch_bends": True, "use_programs": True, "pitch_range": (0, 127)}
EXTRA_DEFAULTS: dict[str, dict[str, Any]] = {  # what a tokenizer cannot be built without
    "MMM": {"base_tokenizer": "REMI"},
    # miditok 3.1's PerTok cannot decode its own PitchBend tokens (a float tick into symusic): off by default
    "PerTok": {"ticks_per_quarter": 480, "use_microtiming": True, "max_microtiming_shift": 0.125,
               "num_microtiming_bins": 30, "use_pitch_bends": False},
}
NOTE_ON = frozenset({"Pitch", "PitchDrum", "NoteOn", "DrumOn"})
NOTE_OFF = frozenset({"NoteOff", "DrumOff"})
NOTE_PARTS = frozenset({"Velocity", "Duration", "MicroTiming"})  # written after their note's pitch
ON_THE_CLOCK = frozenset({"Tempo", "TimeSig", "Pedal", "PedalOff", "PitchBend", "ControlChange", "Program"})
ROW_GROUP_ROWS = 1024
ROW_GROUP_TOKENS = 2**18  # a row group's tokens: ~20 MB as Python lists before it is written
SHARD_ROWS = 200_000


def build_tokenizer(name: str, config: dict[str, Any] | None = None) -> miditok.MusicTokenizer:
    """miditok's ``name`` tokenizer with Send Learn's defaults under ``config`` (TokenizerConfig
    arguments; ``beat_res`` keys may be written ``"0_4"``, as miditok saves them)."""
    if name not in TOKENIZERS:
        raise UsageError(f"unknown tokenizer {name!r}: one of {', '.join(TOKENIZERS)}")
    given = dict(config or {})
    if isinstance(given.get("config"), dict):  # a tokenizer.json miditok saved
        given = dict(given["config"])
    given.update(given.pop("additional_params", None) or {})
    for key in ("beat_res", "beat_res_rest"):
        if isinstance(given.get(key), dict):
            given[key] = {tuple(int(x) for x in str(k).split("_")) if isinstance(k, str) else k: v
                          for k, v in given[key].items()}
    for key in ("pitch_range", "drums_pitch_range"):
        if isinstance(given.get(key), list):
            given[key] = tuple(given[key])
    arguments = {**DEFAULT_CONFIG, **EXTRA_DEFAULTS.get(name, {}), **given}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # miditok warns of every option a tokenizer turns off
            return getattr(miditok, name)(miditok.TokenizerConfig(**arguments))
    except (ValueError, TypeError, KeyError, AssertionError) as exc:
        raise UsageError(f"miditok refuses this {name} config: {exc}") from exc


def grid_quarters(tokenizer: miditok.MusicTokenizer) -> float:
    """The tokenizer's onset grid in quarter notes, in x/4 meters (finer in x/8)."""
    params = tokenizer.config.additional_params
    if type(tokenizer).__name__ == "PerTok":
        if params.get("use_microtiming"):
            return float(2 * params["max_microtiming_shift"] / params["num_microtiming_bins"])
        return 1.0 / float(params["ticks_per_quarter"])
    return 1.0 / float(tokenizer.config.max_num_pos_per_beat)


def merges(tokenizer: miditok.MusicTokenizer) -> bool:
    """The tokenizer writes several tracks in one sequence, each note with its program."""
    return bool(tokenizer.one_token_stream and tokenizer.config.use_programs)


@dataclass
class Tokens:
    input_ids: list[Any]  # int per token, or a list of ints per compound token
    token_sample: list[int]


@dataclass
class _Note:
    pitch: int
    program: int | None
    on: int
    off: int
    on_q: float
    off_q: float
    used_on: bool = False
    used_off: bool = False


def _notes(parts: list[tuple[WindowMidi, int | None]], clock: WindowClock) -> dict[int, list[_Note]]:
    by_pitch: dict[int, list[_Note]] = {}
    for midi, program in parts:
        if not len(midi.notes):
            continue
        on_q = clock.ticks(midi.notes[:, 2]) / 960.0
        off_q = np.maximum(clock.ticks(midi.notes[:, 3]), clock.ticks(midi.notes[:, 2]) + 1) / 960.0
        for (pitch, _, on, off), a, b, channel in zip(midi.notes.tolist(), on_q.tolist(), off_q.tolist(),
                                                      midi.channels.tolist(), strict=True):
            drum = -1 if channel == 9 else program
            by_pitch.setdefault(pitch, []).append(_Note(pitch, drum, on, off, a, b))
    return by_pitch


def _match(notes: dict[int, list[_Note]], pitch: int, program: int | None, quarters: float, end: bool) -> int:
    """The sample of the unused note of ``pitch`` (and ``program``, when known) whose onset (or end)
    is nearest ``quarters``; -1 when none is left."""
    best: _Note | None = None
    for note in notes.get(pitch, ()):
        if (note.used_off if end else note.used_on) or (program is not None and note.program is not None
                                                         and note.program != program):
            continue
        at = note.off_q if end else note.on_q
        if best is None or abs(at - quarters) < abs((best.off_q if end else best.on_q) - quarters):
            best = note
    if best is None:
        return -1
    if end:
        best.used_off = True
        return best.off
    best.used_on = True
    return best.on


def sources(parts: list[tuple[WindowMidi, int | None]], clock: WindowClock) -> dict[str, list[list[Any]]]:
    """The window's events other than notes a token can come from, by token type: ``[quarters, sample,
    used]`` each (tempo and meter changes where the clock puts them; pedals, bends, controls and program
    changes on their captured samples)."""
    out: dict[str, list[list[Any]]] = {"Tempo": [[float(q), round(s), False] for s, q, _ in clock.segments],
                                       "TimeSig": [[float(q), int(clock.samples(q)), False] for q, _, _ in clock.meters]}
    for midi, _ in parts:
        for sample, data in midi.controls:
            status = data[0] & 0xF0
            if status == 0xB0 and data[1] == 64:
                kind = "Pedal" if data[2] >= 64 else "PedalOff"
            else:
                kind = {0xB0: "ControlChange", 0xC0: "Program", 0xE0: "PitchBend"}.get(status, "")
            if kind:
                out.setdefault(kind, []).append([float(clock.quarters(sample)), sample, False])
    return out


def _nearest(candidates: list[list[Any]], quarters: float) -> int | None:
    """The sample of the unused candidate nearest ``quarters`` (taken), or None."""
    free = [c for c in candidates if not c[2]]
    if not free:
        return None
    best = min(free, key=lambda c: abs(c[0] - quarters))
    best[2] = True
    return int(best[1])


def token_samples(events: list[Any], tpq: int, clock: WindowClock, notes: dict[int, list[_Note]], frames: int,
                  with_programs: bool, others: dict[str, list[list[Any]]] | None = None) -> list[int]:
    """One sample per token of ``events`` (miditok ``Event``s, or lists of them for compound tokens)."""
    out: list[int] = []
    last_time, last_sample = None, -1
    others = others or {}

    def on_clock(kind: str, time: int) -> int:
        found = _nearest(others.get(kind, []), time / tpq)
        return found if found is not None else int(np.clip(clock.samples(time / tpq), 0, max(frames - 1, 0)))

    for i, event in enumerate(events):
        if isinstance(event, list):  # compound: its note's sample, or none
            pitch = next((e for e in event if e.type_ in NOTE_ON and e.value != "None"), None)
            out.append(-1 if pitch is None else _match(notes, int(pitch.value), _program(pitch, with_programs),
                                                       pitch.time / tpq, end=False))
            continue
        kind = event.type_
        if kind in NOTE_ON or kind in NOTE_OFF:
            sample = _match(notes, int(event.value), _program(event, with_programs), event.time / tpq,
                            end=kind in NOTE_OFF)
            last_time, last_sample = event.time, sample
        elif kind in NOTE_PARTS and event.time == last_time:
            sample = last_sample
        elif kind == "Program" and i + 1 < len(events) and not isinstance(events[i + 1], list) \
                and events[i + 1].type_ in NOTE_ON | NOTE_OFF and events[i + 1].time == event.time:
            nxt = events[i + 1]
            sample = _peek(notes, int(nxt.value), _program(nxt, with_programs), nxt.time / tpq, nxt.type_ in NOTE_OFF)
        elif kind in ON_THE_CLOCK:
            sample = on_clock(kind, event.time)
        else:
            sample = -1
        out.append(sample)
    return out


def _program(event: Any, with_programs: bool) -> int | None:
    return int(event.program) if with_programs else None


def _peek(notes: dict[int, list[_Note]], pitch: int, program: int | None, quarters: float, end: bool) -> int:
    """``_match`` without taking the note (a program token before its note's pitch)."""
    saved = [(n, n.used_on, n.used_off) for n in notes.get(pitch, ())]
    sample = _match(notes, pitch, program, quarters, end)
    for note, used_on, used_off in saved:
        note.used_on, note.used_off = used_on, used_off
    return sample


def tokenize(tokenizer: miditok.MusicTokenizer, data: bytes, clock: WindowClock,
             parts: list[tuple[WindowMidi, int | None]], frames: int) -> Tokens:
    """The tokens of one window's MIDI file and the sample of each."""
    score = tokenizer.preprocess_score(symusic.Score.from_midi(data))
    sequence = tokenizer.encode(score, no_preprocess_score=True)
    if isinstance(sequence, list):  # one sequence per track: a stream's window has one track, or none
        sequence = [s for s in sequence if s.events]
        if len(sequence) > 1:
            raise RuntimeError(f"{type(tokenizer).__name__} gave {len(sequence)} sequences for one stream")
        if not sequence:
            return Tokens([], [])
        sequence = sequence[0]
    if not any(len(p.notes) for p, _ in parts):
        return Tokens([], [])
    samples = token_samples(sequence.events, score.ticks_per_quarter, clock, _notes(parts, clock), frames,
                            with_programs=len(parts) > 1, others=sources(parts, clock))
    ids = [list(map(int, i)) if isinstance(i, list) else int(i) for i in sequence.ids]
    return Tokens(ids, samples)


@dataclass
class TokensResult:
    rows: int
    skipped: int
    files: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    seconds_clock_windows: int = 0
    tempo_range: tuple[float, float] | None = None
    sample_rates: set[int] = field(default_factory=set)


def _features(compound: bool) -> dict[str, Any]:
    def value(dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "_type": "Value"}

    def listed(feature: dict[str, Any]) -> dict[str, Any]:
        return {"feature": feature, "_type": "List"}

    ids = listed(listed(value("int32"))) if compound else listed(value("int32"))
    return {"session": value("string"), "stream": value("string"), "window": value("int64"),
            "split": value("string"), "start_sample": value("int64"), "frames": value("int64"),
            "sample_rate": value("int64"), "input_ids": ids, "token_sample": listed(value("int64")),
            "flags": listed(value("string"))}


def _schema(compound: bool) -> pa.Schema:
    ids = pa.list_(pa.list_(pa.int32())) if compound else pa.list_(pa.int32())
    schema = pa.schema([("session", pa.string()), ("stream", pa.string()), ("window", pa.int64()),
                        ("split", pa.string()), ("start_sample", pa.int64()), ("frames", pa.int64()),
                        ("sample_rate", pa.int64()), ("input_ids", ids), ("token_sample", pa.list_(pa.int64())),
                        ("flags", pa.list_(pa.string()))])
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": _features(compound)}})})


class _SplitWriter:
    """Parquet shards of one split, ``.part`` until ``publish``; rows in groups of ``group_rows``."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, group_rows: int, shard_rows: int) -> None:
        self.folder, self.split, self.schema = folder, split, schema
        self.group_rows, self.shard_rows = group_rows, shard_rows
        self.paths: list[Path] = []
        self.rows = 0
        self._pending: list[dict[str, Any]] = []
        self._pending_tokens = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        self._pending_tokens += len(row["input_ids"])
        self.rows += 1
        if len(self._pending) >= self.group_rows or self._pending_tokens >= ROW_GROUP_TOKENS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is not None and self._in_shard >= self.shard_rows:
            self._writer.close()
            self._writer = None
        if self._writer is None:
            self.paths.append(self.folder / f".{self.split}-{len(self.paths):05d}.parquet.part")
            self._writer = pq.ParquetWriter(self.paths[-1], self.schema, compression="zstd")
            self._in_shard = 0
        self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
        self._in_shard += len(self._pending)
        self._pending, self._pending_tokens = [], 0

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def publish(self) -> list[str]:
        files = []
        for number, path in enumerate(self.paths):
            final = self.folder / f"{self.split}-{number:05d}-of-{len(self.paths):05d}.parquet"
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
            path.replace(final)
            files.append(str(final))
        return files

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for path in self.paths:
            path.unlink(missing_ok=True)


def write_tokens(data_dir: Path, the_plan: Plan, out: Path, *, tokenizer: str = "REMI",
                 tokenizer_config: dict[str, Any] | None = None, merge_streams: bool = False,
                 include_flagged: bool = False, progress: Callable[[int, int], None] | None = None,
                 group_rows: int = ROW_GROUP_ROWS, shard_rows: int = SHARD_ROWS, **spec: Any) -> TokensResult:
    """Tokenize the plan's windows into ``out`` with miditok's ``tokenizer`` (module docstring)."""
    return _write(data_dir, the_plan, out, build_tokenizer(tokenizer, tokenizer_config), tokenizer,
                  merge_streams=merge_streams, include_flagged=include_flagged, progress=progress,
                  group_rows=group_rows, shard_rows=shard_rows, **spec)


def _write(data_dir: Path, the_plan: Plan, out: Path, tokenizer: miditok.MusicTokenizer, name: str, *,
           merge_streams: bool, include_flagged: bool, progress: Callable[[int, int], None] | None,
           group_rows: int, shard_rows: int, **spec: Any) -> TokensResult:
    if merge_streams and not merges(tokenizer):
        raise UsageError(f"--merge-streams needs a tokenizer that writes several tracks in one sequence with "
                          f"programs; {name} with this config does not (its use_programs and "
                          f"one_token_stream_for_programs are not both on)")
    compound = bool(tokenizer.is_multi_voc)
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    writers = {split: _SplitWriter(folder, split, _schema(compound), group_rows, shard_rows) for split in SPLITS}
    result = TokensResult(0, 0)
    tempos: list[float] = []
    try:
        for row, clock, seconds in _rows(data_dir, the_plan, tokenizer, merge_streams, progress, **spec):
            if not row["input_ids"]:
                row["flags"] = sorted(set(row["flags"]) | {"few_events"})
            if row["flags"] and not include_flagged:
                result.skipped += 1
                continue
            result.audio_seconds += seconds
            result.seconds_clock_windows += clock.source == "seconds"
            tempos += [bpm for _, _, bpm in clock.segments]
            result.sample_rates.add(int(row["sample_rate"]))
            writers[row["split"]].add(row)
            result.rows += 1
        for writer in writers.values():
            writer.close()
        if tempos:
            result.tempo_range = (min(tempos), max(tempos))
        files = [f for writer in writers.values() for f in writer.publish()]
        tokenizer.save(out / "tokenizer.json")
        (out / "README.md").write_text(dataset_card(name, tokenizer, result, {s: w.rows for s, w in writers.items()},
                                                    compound, merge_streams, the_plan.split_note(),
                                                    {s: sum(Path(f).stat().st_size for f in files
                                                            if Path(f).name.startswith(f"{s}-")) for s in SPLITS}))
    except BaseException:
        for writer in writers.values():
            writer.discard()
        for leftover in (out / "tokenizer.json", out / "README.md"):
            leftover.unlink(missing_ok=True)
        for path in folder.glob("*.parquet"):
            path.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
    result.files = files + [str(out / "tokenizer.json"), str(out / "README.md")]
    return result


def _rows(data_dir: Path, the_plan: Plan, tokenizer: miditok.MusicTokenizer, merge_streams: bool,
          progress: Callable[[int, int], None] | None, **spec: Any) -> Iterator[tuple[dict[str, Any], WindowClock, float]]:
    """One row per (session, stream, window), or per window when merged; one window at a time."""
    by_session: dict[str, set[int]] = {}
    for session, index, _ in the_plan.windows:
        by_session.setdefault(session, set()).add(index)
    total = len(the_plan.windows) if merge_streams else the_plan.total
    done = 0
    for session in by_session:
        dataset = Dataset(data_dir)  # one per session: its streams' tables are let go after it
        for window in dataset.windows(session, **spec):
            if window.index not in by_session[session]:
                continue
            base = {"session": session, "window": window.index, "split": window.split, "start_sample": window.start_sample,
                    "frames": window.frames, "sample_rate": window.sample_rate, "flags": list(window.flags)}
            seconds = window.frames_valid / window.sample_rate  # real audio, not the padding
            if merge_streams:
                data, clock, parts = merged_midi(window, window.streams)
                tokens = tokenize(tokenizer, data, clock, [(p, p.program) for p in parts], window.frames)
                yield ({**base, "stream": "+".join(window.streams), "input_ids": tokens.input_ids,
                        "token_sample": tokens.token_sample}, clock, seconds * len(window.streams))
                done += 1
                if progress is not None:
                    progress(done, total)
                continue
            for stream in window.streams:
                midi = window_midi(window, stream)
                tokens = tokenize(tokenizer, midi.data, midi.clock, [(midi, None)], window.frames)
                yield ({**base, "stream": stream, "input_ids": tokens.input_ids, "token_sample": tokens.token_sample},
                       midi.clock, seconds)
                done += 1
                if progress is not None:
                    progress(done, total)


def dataset_card(name: str, tokenizer: miditok.MusicTokenizer, result: TokensResult, rows: dict[str, int],
                 compound: bool, merge_streams: bool, split_note: str, sizes: dict[str, int]) -> str:
    import yaml

    from .parquet import _yaml_feature

    features = _features(compound)
    header = {
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in rows if rows[s]]}],
        "dataset_info": {"config_name": "default",
                         "features": [{"name": n, **_yaml_feature(f)} for n, f in features.items()],
                         "splits": [{"name": s, "num_bytes": sizes.get(s, 0), "num_examples": n}
                                    for s, n in rows.items() if n]},
        "tags": ["midi", "symbolic-music", "miditok", "sendlearn"],
    }
    grid = grid_quarters(tokenizer)
    rate = max(result.sample_rates) if result.sample_rates else 48000
    lines = [f"# Send Learn tokens ({name})", "",
             f"miditok {name} tokens of every {'window (all its streams as tracks, with programs)' if merge_streams else '(session, stream, window)'}"
             " of a Send Learn data directory, written by `sendlearn export tokens`. `tokenizer.json` is miditok's own "
             f"saved tokenizer: `miditok.{name}(params=\"tokenizer.json\")` loads it and decodes `input_ids`.", "",
             "## Time grid", "",
             f"Onsets are quantized to {grid:g} of a quarter note in x/4 meters (half that in x/8): "
             f"{_grid_samples(grid, 120.0, rate)} samples at 120 bpm and {rate} Hz; in general "
             "`sample_rate * 60 / bpm * " + f"{grid:g}` samples."]
    if result.tempo_range is not None:
        low, high = result.tempo_range
        lines.append(f"The tempos in this export run from {low:g} to {high:g} bpm: a grid step is "
                     f"{_grid_samples(grid, high, rate)} to {_grid_samples(grid, low, rate)} samples at {rate} Hz.")
    lines += ["", "`token_sample` holds, for every token, the window-relative sample of the event it came from: a "
              "note's tokens (program, pitch, velocity, duration) the exact sample of its note-on (a note-off token: "
              "its note-off), as captured, not the grid's; pedal, bend, control and program-change tokens the "
              "captured sample of their event (0: the state carried at the start); tempo and meter tokens where the "
              "window's clock puts the change; -1 for tokens that carry no event (bar, position, time shift, rest, "
              "pad). Notes of one pitch closer than a grid step become one token. " + ("`input_ids` rows are compound tokens (one id per "
                                                       "sub-vocabulary)." if compound else ""), "",
              "## Clock", "",
              "Ticks come from the captured playhead (quarter notes): tick 0 is each window's first sample, so bars "
              "count from there. A window whose transport was not playing throughout is timed by its seconds at "
              f"120 bpm: {result.seconds_clock_windows} of the {result.rows} rows here.", "",
              "## Splits", "", "Rows per split: " + (", ".join(f"{s} {n}" for s, n in rows.items() if n) or "none")
              + " (`split` column; files `data/{split}-*`). Every window and stream of a session is in one split, "
              "so no music is shared between them. " + split_note, "",
              "```python", "import datasets, miditok",
              "ds = datasets.load_dataset(\"path/to/this/folder\")  # a DatasetDict: train, validation, test\n"
              "ds = ds[\"train\"]",
              f"tokenizer = miditok.{name}(params=\"tokenizer.json\")",
              "score = tokenizer.decode([ds[0][\"input_ids\"]])", "```", ""]
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n" + "\n".join(lines)


def _grid_samples(grid: float, bpm: float, rate: int) -> str:
    return f"{rate * 60.0 / bpm * grid:g}"
