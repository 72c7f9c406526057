"""Comparing estimators fairly: one grid, one budget, one report (``pyrovae compare``)."""

from .grid import Cell, EstimatorSpec, GridSpec
from .runner import ComparisonDir, compare

__all__ = ["Cell", "ComparisonDir", "EstimatorSpec", "GridSpec", "compare"]
