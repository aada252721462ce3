"""A pedalboard effect chain as a streaming host: block by block, sample-exact automation, measured latency.

The chain runs as a DAW's plug-in chain does: one ``Pedalboard`` called block after block
with ``reset=False``, so every effect keeps its state (reverb tails, compressor envelopes,
delay lines) across blocks. Facts this module relies on, measured with pedalboard 0.9
(tests/test_chain.py keeps them):

- for effects without latency, streaming in blocks of any size gives the one-shot output
  bit for bit (chunk-size invariance);
- a parameter set between two calls applies from the first sample of the next call, so a
  change lands on sample ``s`` when a call starts on ``s``: blocks are split there;
- an effect with latency (``Resample``, ``MP3Compressor``, ``GSMFullRateCompressor``,
  ``PitchShift``) makes pedalboard return fewer samples than it was given, at first: it
  drops as many output samples as the plugin *reports*. A report can be wrong (the GSM
  codec's output leads its input by about a thousand samples once pedalboard has dropped
  them), so the latency is measured, never taken from the report.

Latency: a seeded white-noise burst (an impulse spread over ``BURST`` samples, so a codec
carries it; on a linear effect it gives the impulse response's peak) goes through a fresh
copy of the chain after a second of silence, in the stream's blocks.
Where the burst's cross-correlation with what came out peaks (the earliest lag within 1 %
of the peak, so an echo as loud as the direct sound is not taken for latency) is the
``shift``: what came out is that many samples late (after what pedalboard already
dropped) or early, if negative. The stream is compensated by the shift: a late chain has
its first ``shift`` output samples dropped; an early one is fed ``-shift`` samples of
silence first (pre-roll), so nothing of the stream is lost. At the end, silence is fed
until every sample of the stream has come out. So wet sample ``k`` is the chain's output
for input sample ``k``. When what comes back does not correlate with the burst (normalised
correlation below ``MIN_CORRELATION``: pedalboard's streamed ``PitchShift`` returns
silence, its ``GSMFullRateCompressor`` in 512-frame blocks returns noise), the latency is
recorded as not measured (None) and no shift is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .session import Effect, effect_ids

BURST = 12000  # samples of the latency-measuring burst
PEAK_TOLERANCE = 0.99  # the earliest lag whose correlation is this close to the peak wins
MIN_CORRELATION = 0.02  # below this normalised correlation the output is not the burst: no latency measured
SEARCH_SECONDS = 1.0  # how late (after pedalboard's own dropping) a chain may be and still be measured

Fact = int | float | str | bool | None
Change = tuple[int, str, float]  # (sample or offset, "id.param", value)


class ChainError(RuntimeError):
    """A chain that could not be built or did not give back the stream's samples."""


@dataclass(frozen=True, slots=True)
class Latency:
    """What the measurement found. ``shift``: how late (>0) or early (<0) the chain's output
    is after pedalboard's own dropping; ``withheld``: how many fewer samples pedalboard
    returned than it was given over the measurement; ``samples = withheld + shift``, the
    chain's latency as a host without compensation would see it. ``samples`` is None when
    the chain gave no sound back for the burst (nothing to measure; no shift applied)."""

    samples: int | None
    withheld: int
    shift: int

    def meta(self) -> tuple[tuple[str, Fact], ...]:
        """Facts for stream.json (StreamInfo.meta)."""
        return (("latency_samples", self.samples), ("latency_withheld_by_host", self.withheld),
                ("latency_compensation_samples", self.shift), ("latency_measured_with", "noise burst"))


class EffectChain:
    """pedalboard built-in effects in order, streamed with ``reset=False``.

    ``process`` returns what pedalboard gives back for the block: as many samples for
    effects without latency, fewer at first for effects with it."""

    def __init__(self, effects: Sequence[Effect], sample_rate: int, initial: Mapping[str, float] | None = None) -> None:
        import pedalboard  # GPL host: imported only where it runs

        self.sample_rate = sample_rate
        self.plugins = {}
        for effect, effect_id in zip(effects, effect_ids(list(effects)), strict=True):
            try:
                self.plugins[effect_id] = getattr(pedalboard, effect.name)(**dict(effect.options))
            except (AttributeError, TypeError, ValueError) as exc:
                raise ChainError(f"effect {effect.name} ({effect_id}): {exc}") from exc
        self.board = pedalboard.Pedalboard(list(self.plugins.values()))
        for param, value in (initial or {}).items():
            self.set(param, value)

    def set(self, param: str, value: float) -> None:
        """Move ``id.param`` to ``value`` from the next sample processed on."""
        effect_id, _, attr = param.partition(".")
        setattr(self.plugins[effect_id], attr, value)

    def process(self, audio: np.ndarray) -> np.ndarray:
        if not self.plugins:
            return np.array(audio, dtype=np.float32)
        return np.asarray(self.board(audio, self.sample_rate, reset=False), dtype=np.float32)


def measure_latency(effects: Sequence[Effect], sample_rate: int, channels: int, block_size: int,
                    initial: Mapping[str, float] | None = None) -> Latency:
    """The chain's latency, measured on a fresh copy with a noise burst (module docstring)."""
    if not effects:
        return Latency(0, 0, 0)
    chain = EffectChain(effects, sample_rate, initial)
    lead, search = sample_rate, int(SEARCH_SECONDS * sample_rate)
    burst = np.random.default_rng(20261128).uniform(-0.5, 0.5, BURST).astype(np.float32)
    needed = lead + search + BURST
    limit = needed + 30 * sample_rate  # a chain that holds back more than 30 s is not measured
    out: list[np.ndarray] = []
    fed = got = 0
    while got < needed and fed < limit:
        block = np.zeros((channels, block_size), dtype=np.float32)
        inside = slice(max(lead - fed, 0), max(min(lead + BURST - fed, block_size), 0))
        if inside.start < inside.stop:
            block[:, inside] = burst[fed + inside.start - lead:fed + inside.stop - lead]
        result = chain.process(block)
        fed += block_size
        got += result.shape[1]
        out.append(result)
    heard = np.concatenate(out, axis=1)
    if heard.shape[1] < needed:
        raise ChainError(f"the chain gave back {heard.shape[1]} samples for {fed} (measuring its latency)")
    score = sum(np.abs(_correlate(heard[c], burst, lead + search)) for c in range(channels))
    peak = float(np.max(score))
    if not np.isfinite(peak) or peak <= 0.0:
        return Latency(None, fed - got, 0)
    first = int(np.flatnonzero(score >= PEAK_TOLERANCE * peak)[0])
    window = heard[:, first:first + BURST].astype(np.float64)
    norm = float(np.linalg.norm(burst)) * float(np.sum(np.linalg.norm(window, axis=1)))
    if norm <= 0.0 or score[first] / norm < MIN_CORRELATION:  # what came back is not the burst
        return Latency(None, fed - got, 0)
    return Latency(fed - got + first - lead, fed - got, first - lead)


def _correlate(signal: np.ndarray, burst: np.ndarray, lags: int) -> np.ndarray:
    """``c[m] = sum_n burst[n] * signal[n + m]`` for ``m`` in ``0..lags``."""
    size = 1 << int(np.ceil(np.log2(signal.shape[0] + burst.shape[0])))
    spectrum = np.fft.rfft(signal.astype(np.float64), size) * np.conj(np.fft.rfft(burst.astype(np.float64), size))
    return np.fft.irfft(spectrum, size)[:lags + 1]


class AlignedChain:
    """An ``EffectChain`` whose output is compensated for its measured latency.

    ``push`` feeds input (split at parameter changes so each lands on its sample); ``take``
    returns output sample for sample aligned with the input pushed; ``finish`` feeds silence
    until the output has caught up with the input."""

    def __init__(self, chain: EffectChain, latency: Latency, channels: int, block_size: int) -> None:
        self.chain = chain
        self.latency = latency
        self.channels = channels
        self.block_size = block_size
        self._skip = max(latency.shift, 0)
        self._parts: list[np.ndarray] = []
        self._ready = 0  # aligned samples waiting in _parts
        self._pushed = 0  # input samples pushed (pre-roll not counted)
        self._taken = 0
        if latency.shift < 0:
            self._run(np.zeros((channels, -latency.shift), dtype=np.float32))

    @property
    def ready(self) -> int:
        return self._ready

    def push(self, audio: np.ndarray, changes: Iterable[Change] = ()) -> None:
        """Process ``audio``; ``changes`` are (offset in ``audio``, param, value), sorted, each
        applied from the sample at its offset on."""
        start = 0
        for offset, param, value in changes:
            if offset > start:
                self._run(audio[:, start:offset])
                start = offset
            self.chain.set(param, value)
        if start < audio.shape[1]:
            self._run(audio[:, start:])
        self._pushed += audio.shape[1]

    def take(self, frames: int) -> np.ndarray:
        """The next ``frames`` aligned output samples (``ready`` must be at least ``frames``)."""
        if frames > self._ready:
            raise ChainError(f"asked for {frames} samples, {self._ready} are ready")
        joined = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts, axis=1)
        out, rest = joined[:, :frames], joined[:, frames:]
        self._parts = [rest] if rest.shape[1] else []
        self._ready -= frames
        self._taken += frames
        return np.ascontiguousarray(out)

    def finish(self) -> None:
        """Feed silence until every pushed sample's output is ready (what comes out past
        that is the chain's tail beyond the stream: left untaken)."""
        owed = self._pushed - self._taken - self._ready
        budget = owed + abs(self.latency.withheld) + abs(self.latency.shift) + 4 * self.block_size
        fed = 0
        while self._ready + self._taken < self._pushed:
            if fed > budget:
                raise ChainError(f"the chain gave back {self._ready + self._taken} of {self._pushed} samples "
                                 f"after {fed} samples of silence")
            self._run(np.zeros((self.channels, self.block_size), dtype=np.float32))
            fed += self.block_size

    def _run(self, audio: np.ndarray) -> None:
        out = self.chain.process(audio)
        if self._skip:
            cut = min(self._skip, out.shape[1])
            out, self._skip = out[:, cut:], self._skip - cut
        if out.shape[1]:
            self._parts.append(out)
            self._ready += out.shape[1]
