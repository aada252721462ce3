"""``sendlearn report``: one self-contained HTML page about a data directory, and its figures as JSON.

    from sendlearn.dataset.report import build_report
    build_report("sendlearn-data", "report.html")     # also writes report.json beside it

The page holds a table of the streams (length, format, events, notes, quality and flags), one window's
piano roll over its waveform with its MIDI note-ons and the onsets detected in its audio, tempo and
meter over each session, feature maps and their spread per stream, and histograms of the quality
measures with the flags' counts. Plots are PNGs (matplotlib, Agg) embedded as data URIs: the file
needs nothing beside it. Everything is read through ``sendlearn.dataset``; windows are the ones
``sendlearn sequences`` stored (else 30 s with 5 s overlap), at most ``max_windows`` of them measured
(evenly spread) so a report of a large data directory stays quick.
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
from .windows import Window

SUMMARY_FEATURES = ("rms", "spectral_centroid", "spectral_bandwidth", "onset_strength")


def _spread(items: list[Any], most: int) -> list[Any]:
    if len(items) <= most:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, most).round().astype(int)]


def _tempo_line(dataset: Dataset, session: str) -> dict[str, list[Any]]:
    """Where tempo or meter changes on the session's first stream (its blocks), and its last block."""
    stream = dataset.stream(session, dataset.streams(session)[0])
    blocks = stream.blocks()
    samples, bpm = blocks["sample"].to_numpy(), blocks["bpm"].to_numpy()
    num, den = blocks["ts_num"].to_numpy(), blocks["ts_den"].to_numpy()
    if not len(samples):
        return {"seconds": [0.0], "bpm": [120.0], "ts_num": [4], "ts_den": [4]}
    change = np.ones(len(samples), dtype=bool)
    change[1:] = (bpm[1:] != bpm[:-1]) | (num[1:] != num[:-1]) | (den[1:] != den[:-1])
    change[-1] = True
    keep = np.flatnonzero(change)
    return {"seconds": (samples[keep] / stream.sample_rate).tolist(), "bpm": bpm[keep].tolist(),
            "ts_num": num[keep].tolist(), "ts_den": den[keep].tolist()}


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


def build_report(data_dir: str | os.PathLike[str], out: str | os.PathLike[str], max_windows: int = 200,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write ``out`` (HTML) and ``out`` with ``.json``; the JSON's content."""
    dataset, out = Dataset(data_dir), Path(out)
    sessions = dataset.sessions()
    streams = []
    for recorded in dataset:
        quality = stream_quality(recorded)
        streams.append({**recorded.summary(), "sample_rate": recorded.sample_rate, "channels": recorded.channels,
                        "subtype": recorded.facts.audio.subtype, "notes": len(recorded.notes()),
                        **{k: quality[k] for k in ("peak", "rms", "silence_ratio", "clip_ratio", "note_density",
                                                   "polyphony_max", "complexity", "alignment_median", "flags")}})
    windows: list[Window] = [w for s in sessions for w in dataset.windows(s)]
    chosen = _spread(windows, max_windows)
    rows: list[dict[str, Any]] = []
    flags: dict[str, int] = {}
    per_stream: dict[str, dict[str, list[float]]] = {}  # "session/stream" -> feature -> window means
    best: tuple[tuple[bool, bool, int], Window, str] | None = None  # unflagged with notes, then audible, then notes
    for done, window in enumerate(chosen, 1):
        measured = window_quality(window)
        rows += measured["rows"]
        for flag in measured["flags"]:
            flags[flag] = flags.get(flag, 0) + 1
        for row in measured["rows"]:
            score = (row["notes"] > 0 and not measured["flags"], row["notes"] > 0 and "silent" not in row["flags"],
                     row["notes"])
            if best is None or score > best[0]:
                best = (score, window, row["stream"])
            features = _features(window, row["stream"])
            if features is not None:
                figures = per_stream.setdefault(f"{window.session}/{row['stream']}", {})
                for name in SUMMARY_FEATURES:
                    if name in features:
                        figures.setdefault(name, []).append(float(np.mean(features[name])))
        if progress is not None:
            progress(done, len(chosen))
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
        features = _features(window, stream)
        if features is not None:
            images["window_features"] = plots.feature_maps(features, window.sample_rate, HOP, title)
        highlight = {"session": window.session, "stream": stream, "window": window.index,
                     "start_sample": window.start_sample, "frames": window.frames, "flags": list(window.flags),
                     "notes": len(notes["start"]), "note_ons": [s for s in notes["start"] if s >= 0],
                     "onsets_detected": onsets}
    tempo = {s: _tempo_line(dataset, s) for s in sessions}
    if tempo:
        images["tempo"] = plots.tempo_and_meter(tempo)
    if per_stream:
        images["features"] = plots.feature_summary(per_stream)
    if rows:
        images["quality"] = plots.quality_histograms(rows, dict(sorted(flags.items())))
    report = {
        "data_dir": str(dataset.path), "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sessions": sessions, "streams": streams, "windows": len(windows), "windows_measured": len(chosen),
        "window_flags": dict(sorted(flags.items())), "highlight": highlight, "tempo": tempo,
        "feature_summary": {s: {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                                for k, v in figures.items()} for s, figures in per_stream.items()},
        "quality_rows": rows, "images": {name: len(data) for name, data in images.items()},
    }
    write_aside(out, lambda tmp: tmp.write_text(render_html(report, images)), durable=False)
    write_aside(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(report, default=_plain) + "\n"),
                durable=False)
    return report


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
    return "-" if value is None else str(value)


def render_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    columns = ["session", "stream", "state", "seconds", "sample_rate", "channels", "subtype", "events", "notes",
               "gaps", "peak", "rms", "silence_ratio", "clip_ratio", "note_density", "polyphony_max", "complexity",
               "alignment_median", "flags"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(s.get(c)))}</td>" for c in columns) + "</tr>"
                   for s in report["streams"])
    flags = ", ".join(f"{k}: {v}" for k, v in report["window_flags"].items()) or "none"
    esc = html.escape
    highlight = report["highlight"]
    about = ("" if highlight is None else
             f"<p>{esc(highlight['session'])}/{esc(highlight['stream'])}, window {highlight['window']}: "
             f"{highlight['notes']} notes; orange lines are MIDI note-ons from events.parquet, dashed green lines "
             f"onsets librosa detects in the audio{' (librosa not installed)' if highlight['onsets_detected'] is None else ''}."
             "</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Send Learn report: {esc(report['data_dir'])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }} th, td {{ border: 1px solid #ccc; padding: 3px 6px; }}
th {{ background: #f0f0f0; }} td {{ text-align: right; }} img {{ max-width: 100%; }} .note {{ color: #777; }}
</style></head><body>
<h1>Send Learn report</h1>
<p>{esc(report['data_dir'])}: {len(report['sessions'])} sessions, {len(report['streams'])} streams,
{report['windows']} windows ({report['windows_measured']} measured). Generated {esc(report['generated_at'])}.</p>
<h2>Streams</h2><table><tr>{head}</tr>{body}</table>
<h2>A window: piano roll over its waveform</h2>{about}{_img(images, 'window', 'piano roll over the waveform')}
{_img(images, 'window_features', 'features of the window')}
<h2>Tempo and meter</h2>{_img(images, 'tempo', 'tempo and meter over time')}
<h2>Features per stream</h2><p>Per window, the mean of each feature; boxes spread over the measured windows.</p>
{_img(images, 'features', 'feature summaries')}
<h2>Quality</h2><p>Windows per flag: {esc(flags)}. Histograms over every measured window and stream.</p>
{_img(images, 'quality', 'quality histograms')}
</body></html>
"""
