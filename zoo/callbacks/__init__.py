"""Lightning callbacks and helpers for looking at results: paper-style tables and mask overlays."""

from zoo.callbacks.overlays import mask_color, save_overlay
from zoo.callbacks.results import ResultsTable, format_results, results_table

__all__ = ["ResultsTable", "format_results", "mask_color", "results_table", "save_overlay"]
