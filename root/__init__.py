"""Send Learn: sample-accurate capture from a DAW into training datasets."""

__version__ = "0.1.0"
