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


def tempo_and_meter(sessions: dict[str, dict[str, Any]]) -> bytes:
    """Tempo (quarter notes per minute) over each session's seconds, meter changes written where they
    fall: a grid of small plots, three a row (the report draws a few sessions, never all)."""
    plt = _pyplot()
    columns = min(3, max(len(sessions), 1))
    rows = max(1, -(-len(sessions) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(12.6, 2.3 * rows), squeeze=False)
    for ax in axes.ravel()[len(sessions):]:
        ax.set_visible(False)
    for ax, (session, line) in zip(axes.ravel(), sessions.items(), strict=False):
        seconds = [*line["seconds"], max(line.get("end", line["seconds"][-1]), line["seconds"][-1])]
        ax.step(seconds, [*line["bpm"], line["bpm"][-1]], where="post", color="#3b6ea5")
        last = None
        for at, num, den in zip(line["seconds"], line["ts_num"], line["ts_den"], strict=True):
            if (num, den) != last:
                ax.axvline(at, color="#999999", linewidth=0.6)
                ax.annotate(f"{num}/{den}", (at, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                            textcoords="offset points", fontsize=8)
                last = (num, den)
        low, high = min(line["bpm"]), max(line["bpm"])
        ax.set_ylim(low - 10 - 0.1 * (high - low), high + 10 + 0.1 * (high - low))
        ax.set_title(session if len(session) <= 40 else session[:37] + "...", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("quarter notes / min", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("seconds", fontsize=8)
    fig.tight_layout()
    return png(fig)


def corpus_summary(tempo: list[tuple[float, float]], meters: dict[str, int], session_seconds: list[float],
                   note_density: list[float]) -> bytes:
    """Four panels over the whole corpus: hours at each tempo (quarter notes per minute, 5 bpm bins),
    sessions per meter, hours per session, and the note density of windows (notes begun per second)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    seconds = np.array([s for s, _ in tempo], dtype=np.float64)
    bpm = np.array([b for _, b in tempo], dtype=np.float64)
    low, high = (np.floor(bpm.min() / 5) * 5, np.ceil(bpm.max() / 5) * 5 + 5) if len(bpm) else (60.0, 180.0)
    axes[0].hist(bpm, bins=np.arange(low, high + 5, 5), weights=seconds / 3600, color="#3b6ea5")
    axes[0].set_title("tempo", fontsize=10)
    axes[0].set_xlabel("quarter notes per minute")
    axes[0].set_ylabel("hours")
    shown = dict(list(meters.items())[:12])
    axes[1].bar(list(shown) or ["none"], list(shown.values()) or [0], color="#6a4c93")
    axes[1].set_title("meter" + (f" (12 most common of {len(meters)})" if len(meters) > 12 else ""), fontsize=10)
    axes[1].set_ylabel("sessions")
    hours = np.array(session_seconds, dtype=np.float64) / 3600
    minutes = len(hours) and hours.max() < 2  # short sessions read better in minutes
    axes[2].hist((hours * 60 if minutes else hours) if len(hours) else [0.0], bins=30, color="#2a9d3f")
    axes[2].set_title(f"length of {len(hours)} sessions ({hours.sum():.1f} h)", fontsize=10)
    axes[2].set_xlabel("minutes per session" if minutes else "hours per session")
    axes[2].set_ylabel("sessions")
    axes[3].hist(note_density or [0.0], bins=30, color="#d9822b")
    axes[3].set_title(f"note density ({len(note_density)} windows x streams)", fontsize=10)
    axes[3].set_xlabel("notes begun per second")
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


def feature_boxes(values: dict[str, list[float]]) -> bytes:
    """One box per feature: its spread over the measured windows (each window and stream's mean),
    each on its own axis (their units differ)."""
    plt = _pyplot()
    names = list(values)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.boxplot([values[name]], tick_labels=[name], widths=0.5)
        ax.set_title(f"{name} ({len(values[name])})", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return png(fig)


def quality_histograms(rows: list[dict[str, Any]], flags: dict[str, int]) -> bytes:
    """Histograms of the per-window, per-stream quality measures, and how often each flag is raised."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    measures = ["silence_ratio", "clip_ratio", "over_full_scale_ratio", "rms", "polyphony_mean", "complexity"]
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.5))
    for ax, name in zip(axes.ravel(), measures, strict=False):
        values = np.array([r[name] for r in rows if r.get(name) is not None], dtype=np.float64)
        if name == "rms":  # in dBFS, held to [-120, +40]: one wild render must not squash every other window
            values = np.clip(20 * np.log10(np.maximum(values, 1e-6)), -120.0, 40.0)
            name = "rms (dBFS)"
        ax.hist(values, bins=20, color="#3b6ea5")
        ax.set_title(name, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(4))  # small ratios' long labels would run into each other
    lags = [r["alignment_median"] for r in rows if r.get("alignment_median") is not None]
    axes.ravel()[6].hist(lags or [0], bins=20, color="#d9822b")
    axes.ravel()[6].set_title("alignment_median (samples)", fontsize=9)
    ax = axes.ravel()[7]
    ax.bar(list(flags), list(flags.values()), color="#b23b3b")
    if not flags:
        ax.text(0.5, 0.5, "no window flagged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title("windows per flag", fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    return png(fig)
