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
  drops as many output samples as the plugin *reports*. A report can be wrong or missing,
  so the latency is measured, never taken from the report. (The built-in ones measured here
  are right to the sample, except that a lossy codec's correlation peak is broad: GSM in
  1000-frame blocks measures -1.)

Latency is measured for each effect on a fresh copy of it (at the automation's starting
values), fed in the stream's blocks after some silence, and summed over the chain
(one effect's filter delay or echo never hides another's latency); it is never read from a
plugin's report. First a unit impulse, which also shows how many samples the host withholds
(``withheld``):

- a chain that returns every sample it is given: its latency is where its impulse response
  starts (first reaches -40 dB of its peak). Every built-in effect without latency starts on
  the impulse's own sample (filters included: their response *peaks* later, but starts
  there), so it measures 0; a plugin hiding a latency shows as silence before its response
  (looked for in the half second after the impulse: a later start is not measured).
  A 100 %-wet delay (or a reverb without dry signal and with pre-delay) cannot be told from
  latency this way: it is measured as latency and compensated; keep some dry signal in it.
- a chain the host withholds samples from (pedalboard dropped a reported latency): what is
  left is the report's error, found after a second of silence with a seeded white-noise burst (an impulse spread out,
  so a codec carries it and a linear-phase resampler's ringing does not mislead) as the lag
  of the burst's cross-correlation peak, within ``withheld`` samples either way. When what
  comes back does not correlate with the burst (normalised correlation below
  ``MIN_CORRELATION``: pedalboard's streamed ``GSMFullRateCompressor`` in 512-frame blocks
  returns noise, its ``PitchShift`` silence), the latency is recorded as not measured
  (None) and no shift is applied.

The stream is compensated by the ``shift`` found: a late chain has its first ``shift``
output samples dropped; an early one is fed ``-shift`` samples of silence first (pre-roll),
so nothing of the stream is lost. At the end, silence is fed until every sample of the
stream has come out. So wet sample ``k`` is the chain's output for input sample ``k``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sendlearn.errors import SendLearnError
from sendlearn.plugin.session.tracks import Effect, effect_ids

BURST = 12000  # samples of the latency-measuring burst
ONSET = 1e-2  # an impulse response starts where it first reaches -40 dB of its peak
MIN_CORRELATION = 0.02  # below this normalised correlation the output is not the burst: no latency measured

Fact = int | float | str | bool | None
Change = tuple[int, str, float]  # (sample or offset, "id.param", value)


class ChainError(SendLearnError):
    """A chain that could not be built or did not give back the stream's samples."""


@dataclass(frozen=True, slots=True)
class Latency:
    """What the measurement found. ``shift``: how late (>0) or early (<0) the chain's output
    is after pedalboard's own dropping; ``withheld``: how many fewer samples pedalboard
    returned than it was given over the measurement; ``samples = withheld + shift``, the
    chain's latency as a host without compensation would see it. ``samples`` is None when
    an effect gave back nothing that could be measured (no sound for the impulse, or nothing
    like the burst); that effect then adds no shift."""

    samples: int | None
    withheld: int
    shift: int

    def meta(self) -> tuple[tuple[str, Fact], ...]:
        """Facts for stream.json (StreamInfo.meta)."""
        return (("latency_samples", self.samples), ("latency_withheld_by_host", self.withheld),
                ("latency_compensation_samples", self.shift),
                ("latency_measured_with", "impulse and noise burst" if self.withheld else "impulse"))


class EffectChain:
    """pedalboard built-in effects in order, streamed with ``reset=False``.

    ``process`` returns what pedalboard gives back for the block: as many samples for
    effects without latency, fewer at first for effects with it."""

    def __init__(self, effects: Sequence[Effect], sample_rate: int, initial: Mapping[str, float] | None = None) -> None:
        self.sample_rate = sample_rate
        self.plugins: dict[str, Any] = {}
        if not effects:
            return
        import pedalboard  # GPL host: imported only where it runs

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
    """The chain's latency: each effect's, measured alone on a fresh copy (module docstring),
    summed (in series, delays add). Not measured (None) when one effect's cannot be."""
    total: int | None = 0
    withheld, shift = 0, 0
    for effect, effect_id in zip(effects, effect_ids(list(effects)), strict=True):
        own = {k: v for k, v in (initial or {}).items() if k.split(".", 1)[0] == effect_id}
        one = _measure_one(Effect(effect.name, effect.options, effect_id), sample_rate, channels, block_size, own)
        withheld += one.withheld
        shift += one.shift
        total = None if total is None or one.samples is None else total + one.samples
    return Latency(total, withheld, shift)


def _measure_one(effect: Effect, sample_rate: int, channels: int, block_size: int,
                 initial: Mapping[str, float]) -> Latency:
    effects = [effect]
    lead = block_size  # an impulse response is looked for in the half second after the impulse
    impulse = np.zeros(1, dtype=np.float32) + 1.0
    heard, withheld = _through(effects, sample_rate, channels, block_size, initial, lead, impulse,
                               lead + sample_rate // 2)
    response = np.abs(heard[:, lead:]).sum(axis=0)
    peak = float(response.max(initial=0.0))
    if withheld == 0:
        if not np.isfinite(peak) or peak <= 0.0:
            return Latency(None, 0, 0)  # the chain gave no sound back for the impulse
        onset = int(np.flatnonzero(response >= ONSET * peak)[0])
        return Latency(onset, 0, onset)
    lead = sample_rate  # a second of silence first: room to see a chain whose output comes early
    burst = np.random.default_rng(20261128).uniform(-0.5, 0.5, BURST).astype(np.float32)
    heard, withheld = _through(effects, sample_rate, channels, block_size, initial, lead, burst,
                               lead + BURST + sample_rate)
    reach = min(withheld, lead)
    score = sum(np.abs(_correlate(heard[c], burst, lead + reach)) for c in range(channels))[lead - reach:]
    top = float(np.max(score))
    first = int(np.argmax(score))
    window = heard[:, lead - reach + first:lead - reach + first + BURST].astype(np.float64)
    norm = float(np.linalg.norm(burst)) * float(np.sum(np.linalg.norm(window, axis=1)))
    if not np.isfinite(top) or norm <= 0.0 or top / norm < MIN_CORRELATION:  # what came back is not the burst
        return Latency(None, withheld, 0)
    shift = first - reach
    return Latency(withheld + shift, withheld, shift)


def _through(effects: Sequence[Effect], sample_rate: int, channels: int, block_size: int,
             initial: Mapping[str, float] | None, lead: int, signal: np.ndarray, needed: int) -> tuple[np.ndarray, int]:
    """``signal`` (on every channel) after ``lead`` samples of silence through a fresh chain
    in ``block_size`` blocks, fed until ``needed`` samples came back; returns them and how
    many fewer samples than it was fed the chain returned."""
    chain = EffectChain(effects, sample_rate, initial)
    limit = needed + 30 * sample_rate  # a chain that holds back more than 30 s is not measured
    out: list[np.ndarray] = []
    fed = got = 0
    while got < needed and fed < limit:
        block = np.zeros((channels, block_size), dtype=np.float32)
        start, stop = max(lead - fed, 0), min(lead + signal.shape[0] - fed, block_size)
        if start < stop:
            block[:, start:stop] = signal[fed + start - lead:fed + stop - lead]
        result = chain.process(block)
        fed += block_size
        got += result.shape[1]
        out.append(result)
    if got < needed:
        raise ChainError(f"the chain gave back {got} samples for {fed} (measuring its latency)")
    return np.concatenate(out, axis=1), fed - got


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
    def empty(self) -> bool:
        """No effects: output is input (the host may skip the chain)."""
        return not self.chain.plugins

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
