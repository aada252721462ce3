"""``sendlearn report``: one self-contained HTML page about a corpus, and its figures as JSON.

    from sendlearn.dataset.report import build_report
    build_report("sendlearn-data", "report.html")     # also writes report.json beside it

The page is made for a corpus of any size:
- corpus-wide summaries: hours at each tempo (quarter notes per minute), sessions per meter, hours
  per session, the note density of the measured windows, each summary feature's spread over the
  measured windows (one box per feature), the quality measures' histograms and windows per flag;
- a table of every session (streams, length, events, windows, flagged windows, tempo range, meters),
  from stream.json, each session's first blocks.parquet and its stored windows: no audio is read;
- per-session detail only for ``max_sessions`` sessions chosen evenly: their streams (measured
  whole, as ``sendlearn quality`` does) and tempo and meter over time;
- one window's piano roll over its waveform, with its MIDI note-ons and the onsets detected in it.

Windows are the ones ``sendlearn sequences`` stored (else cut now), at most ``max_windows`` of them
measured (evenly spread), so the time grows with the windows measured and the sessions detailed,
and the page's size with the number of sessions only through the table (about 200 bytes a row).
Flags per reason count every window when all are stored, else the measured ones. Plots are PNGs
(matplotlib, Agg) embedded as data URIs: the file needs nothing beside it.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sendlearn.files.aside import write_aside

from . import report_plots as plots
from .facade import Dataset
from .features import HOP
from .quality import stream_quality, window_quality
from .splits import SPLITS, SplitSpec, session_split
from .windows import Window

SUMMARY_FEATURES = ("rms", "spectral_centroid", "spectral_bandwidth", "spectral_rolloff", "onset_strength")
STREAM_MEASURES = ("peak", "rms", "silence_ratio", "clip_ratio", "over_full_scale_ratio", "note_density",
                   "polyphony_max", "complexity", "alignment_median", "flags")


def spread(items: list[Any], most: int) -> list[Any]:
    """At most ``most`` of ``items``, evenly chosen, first and last included."""
    if len(items) <= most:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, most).round().astype(int)]


def _tempo_line(dataset: Dataset, session: str) -> dict[str, Any]:
    """Where tempo or meter changes on the session's first stream (its blocks), and its end."""
    stream = dataset.stream(session, dataset.streams(session)[0])
    blocks = stream.blocks()
    samples, bpm = blocks["sample"].to_numpy(), blocks["bpm"].to_numpy()
    num, den = blocks["ts_num"].to_numpy(), blocks["ts_den"].to_numpy()
    end = dataset.session_frames(session) / stream.sample_rate
    if not len(samples):
        return {"seconds": [0.0], "bpm": [120.0], "ts_num": [4], "ts_den": [4], "end": end}
    change = np.ones(len(samples), dtype=bool)
    change[1:] = (bpm[1:] != bpm[:-1]) | (num[1:] != num[:-1]) | (den[1:] != den[:-1])
    change[-1] = True
    keep = np.flatnonzero(change)
    return {"seconds": (samples[keep] / stream.sample_rate).tolist(), "bpm": bpm[keep].tolist(),
            "ts_num": num[keep].tolist(), "ts_den": den[keep].tolist(), "end": end}


def _spans(line: dict[str, Any]) -> list[tuple[float, float, str]]:
    """(seconds, bpm, meter) held from each change to the next (the last to the session's end)."""
    starts = line["seconds"]
    ends = [*starts[1:], max(line["end"], starts[-1])]
    return [(b - a, bpm, f"{n}/{d}") for a, b, bpm, n, d in
            zip(starts, ends, line["bpm"], line["ts_num"], line["ts_den"], strict=True)]


def _onsets(audio: np.ndarray, sample_rate: int) -> list[int] | None:
    try:
        import librosa
    except ImportError:  # the 'dataset' extra: without it the plot shows note-ons only
        return None
    from .features import mono

    found = librosa.onset.onset_detect(y=mono(audio), sr=sample_rate, hop_length=HOP, units="samples")
    return [int(s) for s in found]


def _features(window: Window, stream: str) -> dict[str, np.ndarray] | None:
    try:
        return window.features(stream)
    except ImportError:  # not cached, and no librosa to compute them
        return None


def _session_row(dataset: Dataset, session: str, windows: list[Window], line: dict[str, Any]) -> dict[str, Any]:
    streams = [dataset.stream(session, name) for name in dataset.streams(session)]
    known = [w for w in windows if w.flags_known]
    flags: dict[str, int] = {}
    for window in known:
        for flag in window.flags:
            flags[flag] = flags.get(flag, 0) + 1
    split = windows[0].split if windows else session_split(dataset, session, SplitSpec()).split
    return {"session": session, "split": split, "streams": len(streams), "seconds": line["end"],
            "events": sum(s.facts.events for s in streams), "windows": len(windows),
            "flagged": sum(bool(w.flags) for w in known) if len(known) == len(windows) else None,
            "flags": dict(sorted(flags.items())), "tempo_min": min(line["bpm"]), "tempo_max": max(line["bpm"]),
            "meters": list(dict.fromkeys(f"{n}/{d}" for n, d in zip(line["ts_num"], line["ts_den"], strict=True)))}


def build_report(data_dir: str | os.PathLike[str], out: str | os.PathLike[str], max_windows: int = 200,
                 progress: Callable[[int, int], None] | None = None, max_sessions: int = 12) -> dict[str, Any]:
    """Write ``out`` (HTML) and ``out`` with ``.json``; the JSON's content."""
    dataset, out = Dataset(data_dir), Path(out)
    sessions = dataset.sessions()
    detailed = spread(sessions, max_sessions)
    by_session = {s: list(dataset.windows(s)) for s in sessions}
    windows: list[Window] = [w for s in sessions for w in by_session[s]]
    all_known = all(w.flags_known for w in windows)
    lines = {s: _tempo_line(dataset, s) for s in sessions}
    table = [_session_row(dataset, s, by_session[s], lines[s]) for s in sessions]
    streams = []
    for session in detailed:
        for name in dataset.streams(session):
            recorded = dataset.stream(session, name)
            quality = stream_quality(recorded)
            streams.append({**recorded.summary(), "sample_rate": recorded.sample_rate,
                            "channels": recorded.channels, "subtype": recorded.facts.audio.subtype,
                            "notes": len(recorded.notes()), **{k: quality[k] for k in STREAM_MEASURES}})
    chosen = spread(windows, max_windows)
    rows: list[dict[str, Any]] = []
    flags: dict[str, int] = {}
    features: dict[str, list[float]] = {}  # feature -> its mean in each measured window and stream
    best: tuple[tuple[bool, bool, int], Window, str] | None = None  # unflagged with notes, then audible, then notes
    for done, window in enumerate(chosen, 1):
        measured = window_quality(window)
        rows += measured["rows"]
        if not all_known:
            for flag in measured["flags"]:
                flags[flag] = flags.get(flag, 0) + 1
        for row in measured["rows"]:
            score = (row["notes"] > 0 and not measured["flags"], row["notes"] > 0 and "silent" not in row["flags"],
                     row["notes"])
            if best is None or score > best[0]:
                best = (score, window, row["stream"])
            figures = _features(window, row["stream"])
            if figures is not None:
                real = 1 + window.frames_valid // HOP  # the frames of the window's real part
                for name in SUMMARY_FEATURES:
                    if name in figures:
                        features.setdefault(name, []).append(float(np.mean(figures[name][..., :real])))
        if progress is not None:
            progress(done, len(chosen))
    if all_known:
        for window in windows:
            for flag in window.flags:
                flags[flag] = flags.get(flag, 0) + 1
    images: dict[str, bytes] = {}
    highlight = None
    if best is not None:
        _, window, stream = best
        notes = window.notes(stream).to_pydict()
        audio = window.audio(stream)
        onsets = _onsets(audio, window.sample_rate)
        title = (f"{window.session}/{stream}, window {window.index} "
                 f"({window.start_sample / window.sample_rate:.2f} s, flags: {', '.join(window.flags) or 'none'})")
        images["window"] = plots.piano_roll_over_waveform(audio, window.sample_rate, notes, onsets, title)
        figures = _features(window, stream)
        if figures is not None:
            images["window_features"] = plots.feature_maps(figures, window.sample_rate, HOP, title)
        highlight = {"session": window.session, "stream": stream, "window": window.index,
                     "start_sample": window.start_sample, "frames": window.frames,
                     "frames_valid": window.frames_valid, "flags": list(window.flags),
                     "notes": len(notes["start"]), "note_ons": [s for s in notes["start"] if s >= 0],
                     "onsets_detected": onsets}
    spans = [span for s in sessions for span in _spans(lines[s])]
    meters: dict[str, int] = {}
    for session in sessions:
        for meter in dict.fromkeys(m for _, _, m in _spans(lines[session])):
            meters[meter] = meters.get(meter, 0) + 1
    if sessions:
        images["corpus"] = plots.corpus_summary(
            [(seconds, bpm) for seconds, bpm, _ in spans], dict(sorted(meters.items(), key=lambda m: -m[1])),
            [row["seconds"] for row in table],
            [r["note_density"] for r in rows if r["notes"] > 0])
        images["tempo"] = plots.tempo_and_meter({s: lines[s] for s in detailed})
    if features:
        images["features"] = plots.feature_boxes(features)
    if rows:
        images["quality"] = plots.quality_histograms(rows, dict(sorted(flags.items())))
    report = {
        "data_dir": str(dataset.path), "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sessions": sessions, "sessions_detailed": detailed, "session_table": table, "streams": streams,
        "hours": sum(row["seconds"] for row in table) / 3600, "windows": len(windows),
        "splits": _splits(table),
        "windows_measured": len(chosen), "window_flags": dict(sorted(flags.items())),
        "flags_counted_over": "all windows" if all_known else "measured windows",
        "tempo_hours": _hours_by(spans, lambda bpm: f"{bpm:g}"), "meter_sessions": dict(sorted(meters.items())),
        "highlight": highlight, "tempo": {s: lines[s] for s in detailed},
        "feature_summary": {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)),
                                "values": len(v)} for k, v in features.items()},
        "quality_rows": rows, "images": {name: len(data) for name, data in images.items()},
    }
    write_aside(out, lambda tmp: tmp.write_text(render_html(report, images)), durable=False)
    write_aside(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(report, default=_plain) + "\n"),
                durable=False)
    return report


def _splits(table: list[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Hours, windows and sessions in each split (all of a session's in its one)."""
    out: dict[str, dict[str, float | int]] = {name: {"hours": 0.0, "windows": 0, "sessions": 0} for name in SPLITS}
    for row in table:
        split = out.setdefault(row["split"], {"hours": 0.0, "windows": 0, "sessions": 0})
        split["hours"] += row["seconds"] / 3600
        split["windows"] += row["windows"]
        split["sessions"] += 1
    return out


def _hours_by(spans: list[tuple[float, float, str]], key: Callable[[float], str]) -> dict[str, float]:
    hours: dict[str, float] = {}
    for seconds, bpm, _ in spans:
        hours[key(bpm)] = hours.get(key(bpm), 0.0) + seconds / 3600
    return dict(sorted(hours.items(), key=lambda item: float(item[0])))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def _img(images: dict[str, bytes], name: str, alt: str) -> str:
    if name not in images:
        return f"<p class=note>{html.escape(alt)}: not available (no windows, or features without librosa).</p>"
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def _table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>\n"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    stream_columns = ["session", "stream", "state", "seconds", "sample_rate", "channels", "subtype", "events",
                      "notes", "gaps", *STREAM_MEASURES]
    session_columns = ["session", "split", "streams", "seconds", "events", "windows", "flagged", "flags", "tempo_min",
                       "tempo_max", "meters"]
    flags = ", ".join(f"{k}: {v}" for k, v in report["window_flags"].items()) or "none"
    esc = html.escape
    highlight = report["highlight"]
    about = ("" if highlight is None else
             f"<p>{esc(highlight['session'])}/{esc(highlight['stream'])}, window {highlight['window']}: "
             f"{highlight['notes']} notes; orange lines are MIDI note-ons from events.parquet, dashed green lines "
             f"onsets librosa detects in the audio{' (librosa not installed)' if highlight['onsets_detected'] is None else ''}."
             "</p>")
    detailed, total = len(report["sessions_detailed"]), len(report["sessions"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Send Learn report: {esc(report['data_dir'])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }} th, td {{ border: 1px solid #ccc; padding: 3px 6px; }}
th {{ background: #f0f0f0; position: sticky; top: 0; }} td {{ text-align: right; }} img {{ max-width: 100%; }}
.note {{ color: #777; }} .scroll {{ max-height: 28em; overflow-y: auto; display: inline-block; }}
</style></head><body>
<h1>Send Learn report</h1>
<p>{esc(report['data_dir'])}: {total} sessions, {report['hours']:.2f} h, {report['windows']} windows
({report['windows_measured']} measured). Generated {esc(report['generated_at'])}.</p>
<h2>Splits</h2><p>Every window and stream of a session is in the session's split (<code>sendlearn sequences
--split</code>).</p>{_table(["split", "hours", "windows", "sessions"],
                            [{"split": k, **v} for k, v in report["splits"].items()])}
<h2>The corpus</h2><p>Hours at each tempo, sessions per meter, hours per session, and the note density of the
measured windows (streams with notes).</p>
{_img(images, 'corpus', 'corpus summaries')}
<h2>Quality</h2><p>Windows per flag ({esc(report['flags_counted_over'])}): {esc(flags)}. Histograms over every
measured window and stream.</p>
{_img(images, 'quality', 'quality histograms')}
<h2>Features</h2><p>Per measured window and stream, the mean of each feature over the window's real frames;
one box per feature.</p>
{_img(images, 'features', 'feature distributions')}
<h2>Sessions</h2><div class=scroll>{_table(session_columns, report['session_table'])}</div>
<h2>Detail for {detailed} of {total} sessions</h2><p class=note>Chosen evenly (--max-sessions).</p>
<h3>Streams</h3>{_table(stream_columns, report['streams'])}
<h3>Tempo and meter</h3>{_img(images, 'tempo', 'tempo and meter over time')}
<h2>A window: piano roll over its waveform</h2>{about}{_img(images, 'window', 'piano roll over the waveform')}
{_img(images, 'window_features', 'features of the window')}
</body></html>
"""
