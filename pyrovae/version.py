"""pyrovae's version, recorded in every run and comparison it writes."""

__version__ = "0.1.0"
