"""The spatial-bias monitor and what it needs.

- :mod:`~lightning_selrel.monitor.callback`: ``SelectiveRelevanceMonitor``, the callback (when to run, what to
  measure, what to log);
- :mod:`~lightning_selrel.monitor.writers`: its media, tables, layout and HParams for the run's loggers;
- :mod:`~lightning_selrel.monitor.probe_set`: the fixed probe clips and their motion masks;
- :mod:`~lightning_selrel.monitor.behaviour`: the behavioural second opinion (frozen, shuffled, reversed clips);
- :mod:`~lightning_selrel.monitor.calibration`: a scale for spatial bias from two references;
- :mod:`~lightning_selrel.monitor.dashboard`, :mod:`~lightning_selrel.monitor.render`: the custom-scalars
  layout, HParams and tables, and the heatmap panels and GIFs.
"""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_METHODS": ".callback",
    "SelectiveRelevanceMonitor": ".callback",
    "Calibration": ".calibration",
    "load_calibration": ".calibration",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
