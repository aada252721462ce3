"""A window's quality flags and features worked out now: the ``WindowMeasures`` of windows that
no ``sequences/`` cache holds (and what the cache falls back on)."""

from __future__ import annotations

import numpy as np

from .features import window_features
from .quality import window_quality
from .windows import Window


class MeasureNow:
    """Flags from ``quality.window_quality``, features from ``features.window_features``."""

    def flags(self, window: Window) -> tuple[str, ...]:
        return tuple(window_quality(window)["flags"])

    def features(self, window: Window, stream: str) -> dict[str, np.ndarray]:
        return window_features(window, stream)


MEASURE_NOW = MeasureNow()
