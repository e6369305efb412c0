"""Nirvana-MRI: lightweight codecs around a frozen Nirvana backbone, with MRI physics around both."""

from .model import NirvanaMRI

__all__ = ["NirvanaMRI"]
