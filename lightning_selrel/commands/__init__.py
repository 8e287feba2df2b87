"""The command line: ``python -m lightning_selrel <command>`` (and the ``lightning-selrel`` script).

- :mod:`~lightning_selrel.commands.dispatch`: the front door (dispatch, top-level help, the console entry point);
- :mod:`~lightning_selrel.commands.lightning_cli`: ``fit``, ``validate``, ``test``, ``predict`` (a LightningCLI);
- :mod:`~lightning_selrel.commands.explain`, :mod:`~lightning_selrel.commands.windows`,
  :mod:`~lightning_selrel.commands.stream`: ``explain`` a video file or a live stream, window by window;
- :mod:`~lightning_selrel.commands.calibrate`: ``calibrate`` (train the two references, write the scale);
- :mod:`~lightning_selrel.commands.cache`: ``cache`` (decode videos once into the frame cache);
- :mod:`~lightning_selrel.commands.notebook`: :func:`explain_video` and :func:`calibrate`, the commands as
  functions that return their report.

Commands sit on top of everything else: nothing outside this folder imports it.
"""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    "console": ".dispatch",
    "main": ".dispatch",
    "SelrelCLI": ".lightning_cli",
    "cli_options": ".lightning_cli",
    "configuration_error": ".lightning_cli",
    "calibrate": ".notebook",
    "explain_video": ".notebook",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
