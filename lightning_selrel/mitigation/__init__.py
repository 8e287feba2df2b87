"""Static-bias mitigation during training: batch transforms that blend still frames into the clips.

- :mod:`~lightning_selrel.mitigation.blend`: background erasing (Wang et al., CVPR 2021) and StillMix (Li et al.,
  ICCV 2023) as pure torch functions;
- :mod:`~lightning_selrel.mitigation.callback`: :class:`StaticBiasMitigation`, the callback that applies one to
  every training batch (``--config callbacks/static_bias_mitigation.yaml``).

The monitor's cue-conflict share and frozen-clip accuracy (``selrel/behaviour/``) say whether it worked.
"""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    "StaticBiasMitigation": ".callback",
    "background_erasing": ".blend",
    "still_mix": ".blend",
    "blend_still": ".blend",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
