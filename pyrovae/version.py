"""pyrovae's version, recorded in every run and comparison it writes."""

VERSION = "0.1.0"
__version__ = VERSION
