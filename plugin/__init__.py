"""Hosts and the capture processor they drive. Host libraries are imported only by their own modules."""

from sendlearn.plugin.processor import CaptureProcessor

__all__ = ["CaptureProcessor"]
