"""The report's figures (``sendlearn.dataset.report``), drawn with matplotlib's Agg backend into PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display: PNGs in memory
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def piano_roll_over_waveform(audio: np.ndarray, sample_rate: int, notes: dict[str, list[int]],
                             onsets: list[int] | None, title: str) -> bytes:
    """The window's waveform (mono) with note-ons and detected onsets marked, its notes below on the same time axis."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    step = max(1, len(mono) // 4000)  # an envelope of min/max per pixel column, not every sample
    usable = len(mono) // step * step
    if usable:
        chunks = mono[:usable].reshape(-1, step)
        t = np.arange(chunks.shape[0]) * step / sample_rate
        top.fill_between(t, chunks.min(axis=1), chunks.max(axis=1), color="#3b6ea5", linewidth=0)
    peak = float(np.abs(mono).max(initial=0.0)) or 1.0  # scaled to the window's peak: quiet audio shows too
    starts = [s / sample_rate for s in notes["start"] if s >= 0]
    top.vlines(starts, -peak, peak, colors="#d9822b", linewidth=0.8, label="MIDI note-on")
    if onsets is not None:
        top.vlines([s / sample_rate for s in onsets], -peak, peak, colors="#2a9d3f", linestyles="dashed",
                   linewidth=0.8, label="onset detected in the audio")
    top.set_ylim(-1.05 * peak, 1.05 * peak)
    top.set_ylabel(f"amplitude (peak {20 * np.log10(peak):.1f} dBFS)")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(title)
    frames = audio.shape[-1]
    for start, end, pitch, velocity in zip(notes["start"], notes["end"], notes["pitch"], notes["velocity"],
                                           strict=True):
        a, b = max(start, 0) / sample_rate, min(end, frames) / sample_rate
        bottom.broken_barh([(a, max(b - a, 1.0 / sample_rate))], (pitch - 0.4, 0.8),
                           facecolors=plt.cm.viridis(velocity / 127.0))
    pitches = notes["pitch"] or [60]
    bottom.set_ylim(min(pitches) - 2, max(pitches) + 2)
    bottom.set_ylabel("MIDI pitch")
    bottom.set_xlabel("seconds into the window")
    bottom.set_xlim(0, frames / sample_rate)
    return png(fig)


def tempo_and_meter(sessions: dict[str, dict[str, list[Any]]]) -> bytes:
    """Tempo (quarter notes per minute) over each session's seconds, meter changes written where they fall."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(sessions), 1, figsize=(11, 2.4 * len(sessions)), squeeze=False)
    for ax, (session, line) in zip(axes[:, 0], sessions.items(), strict=True):
        ax.step(line["seconds"], line["bpm"], where="post", color="#3b6ea5")
        last = None
        for seconds, num, den in zip(line["seconds"], line["ts_num"], line["ts_den"], strict=True):
            if (num, den) != last:
                ax.axvline(seconds, color="#999999", linewidth=0.6)
                ax.annotate(f"{num}/{den}", (seconds, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                            textcoords="offset points", fontsize=9)
                last = (num, den)
        low, high = min(line["bpm"]), max(line["bpm"])
        ax.set_ylim(low - 10 - 0.1 * (high - low), high + 10 + 0.1 * (high - low))
        ax.set_ylabel("bpm")
        ax.set_title(f"{session}: tempo and meter", fontsize=10)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    return png(fig)


def feature_maps(features: dict[str, np.ndarray], sample_rate: int, hop: int, title: str) -> bytes:
    """MFCC, chroma and onset strength of one window and stream, frames of ``hop`` samples."""
    plt = _pyplot()
    names = [n for n in ("mfcc", "chroma", "onset_strength", "spectral_centroid") if n in features]
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 1.9 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        values = np.asarray(features[name], dtype=np.float64)
        extent = (0, values.shape[-1] * hop / sample_rate)
        if values.ndim == 2 and values.shape[0] > 1:
            ax.imshow(values, aspect="auto", origin="lower", cmap="magma", extent=(*extent, 0, values.shape[0]))
        else:
            ax.plot(np.arange(values.shape[-1]) * hop / sample_rate, values.ravel(), color="#3b6ea5")
        ax.set_ylabel(name, fontsize=9)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("seconds into the window")
    return png(fig)


def feature_summary(per_stream: dict[str, dict[str, list[float]]]) -> bytes:
    """Per stream, the spread over its windows of each summary figure (a box per stream)."""
    plt = _pyplot()
    figures = sorted({name for values in per_stream.values() for name in values})
    fig, axes = plt.subplots(1, len(figures), figsize=(3.2 * len(figures), 3.6), squeeze=False)
    labels = list(per_stream)
    for ax, name in zip(axes[0], figures, strict=True):
        ax.boxplot([per_stream[s].get(name, []) or [np.nan] for s in labels], tick_labels=labels)
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.tight_layout()
    return png(fig)


def quality_histograms(rows: list[dict[str, Any]], flags: dict[str, int]) -> bytes:
    """Histograms of the per-window, per-stream quality measures, and how often each flag is raised."""
    plt = _pyplot()
    measures = ["silence_ratio", "clip_ratio", "rms", "note_density", "polyphony_mean", "complexity"]
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.5))
    for ax, name in zip(axes.ravel(), measures, strict=False):
        values = [r[name] for r in rows if r.get(name) is not None]
        ax.hist(values, bins=20, color="#3b6ea5")
        ax.set_title(name, fontsize=9)
    lags = [r["alignment_median"] for r in rows if r.get("alignment_median") is not None]
    axes.ravel()[6].hist(lags or [0], bins=20, color="#d9822b")
    axes.ravel()[6].set_title("alignment_median (samples)", fontsize=9)
    ax = axes.ravel()[7]
    ax.bar(list(flags) or ["none"], list(flags.values()) or [0], color="#b23b3b")
    ax.set_title("windows per flag", fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    return png(fig)
