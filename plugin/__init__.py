"""Hosts and the capture processor they drive. Host libraries are imported only by their own modules."""

from .processor import CaptureProcessor

__all__ = ["CaptureProcessor"]
