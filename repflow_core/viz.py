"""Pictures: flow fields as colours (OpenCV, :mod:`repflow_core.flow_images`) and charts (matplotlib,
:mod:`repflow_core.charts`): training curves, confusion matrices, per-class bars, heatmaps.

One import for both (``from repflow_core import viz``); each half lives in its own module so the node, which draws
flow colours per frame, never loads the chart code, and the charts' matplotlib stays an optional dependency.
"""

from __future__ import annotations

from .charts import (
    _figure,  # noqa: F401 - used by repflow_core.bag_replay for its own chart
    _render,  # noqa: F401
    confusion_figure,
    confusion_summary,
    curves_figure,
    grouped_bars_figure,
    plot_confusion,
    plot_curves,
    plot_grouped_bars,
    plot_heatmap,
    plot_per_class,
    read_log_csv,
)
from .flow_images import flow_grid_image, flow_to_color, make_colorwheel, write_png

__all__ = [
    "flow_grid_image",
    "flow_to_color",
    "grouped_bars_figure",
    "make_colorwheel",
    "confusion_figure",
    "confusion_summary",
    "curves_figure",
    "plot_confusion",
    "plot_curves",
    "plot_grouped_bars",
    "plot_heatmap",
    "plot_per_class",
    "read_log_csv",
    "write_png",
]
