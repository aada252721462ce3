"""Features of one stream in one window, frames of 512 samples centred on ``t * 512``.

Each is what librosa gives when called on the window's mono slice (mean over channels,
float32, the stream's own rate) with ``hop_length=512`` and its defaults (``n_fft=2048``,
``center=True``), e.g. ``mfcc = librosa.feature.mfcc(y=mono, sr=sr, n_mfcc=13, hop_length=512)``.
Called one by one, librosa runs a short-time Fourier transform per feature; here one STFT feeds
them all, through the same librosa functions given the spectrogram librosa would have made
(``|D|`` for the spectral shape features, ``|D|**2`` for chroma and the mel spectrogram, whose dB
feed MFCC and onset strength), so the results are librosa's own. RMS is librosa's from the
samples (its spectrogram form is a different figure). ``piano_roll`` is in ``notes.piano_roll``.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np

from sendlearn.errors import MissingExtra

from .notes import piano_roll
from .windows import Window

HOP = 512
N_FFT = 2048
N_MFCC = 13
FEATURES = ("mfcc", "chroma", "spectral_centroid", "spectral_bandwidth", "spectral_rolloff", "spectral_contrast",
            "rms", "onset_strength", "piano_roll")


def _librosa() -> ModuleType:
    try:
        import librosa
    except ImportError:
        raise MissingExtra("librosa", "computing features") from None
    return librosa


def mono(audio: np.ndarray) -> np.ndarray:
    """The mean over channels, float32, contiguous: ``audio.mean(axis=0)``, bit for bit (numpy adds
    a few rows one after another, then divides), without reducing 2-sample rows one by one, which
    is what ``mean`` does on the reader's (frames, channels) buffer seen as (channels, frames)."""
    if audio.shape[0] > 8:  # numpy sums longer axes pairwise: let it
        return np.ascontiguousarray(audio.mean(axis=0, dtype=np.float32))
    out = np.array(audio[0], dtype=np.float32, order="C")
    for row in audio[1:]:
        out += row
    out /= np.float32(audio.shape[0])
    return out


def audio_features(y: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """librosa's features of mono ``y`` at ``sample_rate``, from one STFT."""
    librosa = _librosa()
    # chroma's tuning estimate warns on silence (and still returns librosa's values): a silent
    # window is for quality to flag, not a warning per window
    warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
    spectrum = librosa.stft(y, n_fft=N_FFT, hop_length=HOP)
    magnitude = np.abs(spectrum)
    power = magnitude**2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sample_rate))
    feature = librosa.feature
    # Centroid and bandwidth both weight the bins by |D| normalised per frame: normalise once, take
    # the centroid as librosa.feature.spectral_centroid writes it, give bandwidth the same weights.
    weights = librosa.util.normalize(magnitude, norm=1, axis=-2)
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=N_FFT)[:, np.newaxis]
    centroid = np.sum(freqs * weights, axis=-2, keepdims=True)
    return {
        "mfcc": feature.mfcc(S=mel_db, n_mfcc=N_MFCC),
        "chroma": feature.chroma_stft(S=power, sr=sample_rate),
        "spectral_centroid": centroid,
        "spectral_bandwidth": feature.spectral_bandwidth(S=weights, sr=sample_rate, centroid=centroid, norm=False),
        "spectral_rolloff": feature.spectral_rolloff(S=magnitude, sr=sample_rate),
        "spectral_contrast": feature.spectral_contrast(S=magnitude, sr=sample_rate),
        "rms": feature.rms(y=y, hop_length=HOP),
        "onset_strength": librosa.onset.onset_strength(S=mel_db, sr=sample_rate, hop_length=HOP),
    }


def window_features(window: Window, stream: str, audio: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every feature of ``stream`` in ``window`` (``FEATURES``), each with ``1 + frames // 512`` frames;
    ``audio`` is the window's slice when the caller has read it already."""
    out = audio_features(mono(window.audio(stream) if audio is None else audio), window.sample_rate)
    source = window.dataset.stream(window.session, stream)
    out["piano_roll"] = piano_roll(source.notes(window.start_sample, window.stop_sample), window.start_sample,
                                   window.frames, HOP)
    return out


def warm_up() -> None:
    """Compile librosa's numba kernels once in this process (about 20 s on a fresh machine), so the
    first window does not pay for it, and worker processes forked after it inherit them."""
    audio_features(np.random.default_rng(0).uniform(-0.5, 0.5, 8192).astype(np.float32), 22050)
