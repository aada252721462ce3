"""Errors of the offline hosts that are not one module's alone.

``RenderError`` is raised by every instrument host (DawDreamer: plugin/offline/dawdreamer.py, FluidSynth:
plugin/offline/fluidsynth.py); the dispatcher that picks the host imports the hosts, so the error
lives below all of them.
"""

from __future__ import annotations

from sendlearn.errors import SendLearnError


class RenderError(SendLearnError):
    """An instrument that could not be loaded, compiled or run; the message says which and why."""
