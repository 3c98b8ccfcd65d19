"""Lightning callbacks and helpers for looking at results: paper-style tables and mask overlays."""

from zoo.callbacks.overlays import Overlays, mask_color, save_overlay
from zoo.callbacks.results import ResultsTable, flat_results, results_table

__all__ = ["Overlays", "ResultsTable", "flat_results", "mask_color", "results_table", "save_overlay"]
