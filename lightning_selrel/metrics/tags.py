"""Names of everything the monitor logs and the ``explain`` command reports, defined once.

Per method ``<m>`` the monitor logs ``selrel/<m>/<name>`` for every name of :data:`SCORES` (each with a
``_std`` companion, the population std over probe clips), :data:`SHARES` and :data:`TIMINGS` (without);
agreement between two methods goes to ``selrel/<kind>/<a>_vs_<b>`` for each kind of :data:`AGREEMENTS`.
:func:`lightning_selrel.metrics.functional.clip_scores` computes the scores by these names, the ``explain`` command's
report uses :data:`WINDOW_METRICS`, and the dashboard layout is built from the same helpers. The module is
plain Python, so anything may import it.
"""

from __future__ import annotations

__all__ = [
    "AGREEMENTS",
    "BEHAVIOUR",
    "CALIBRATED",
    "CONFLICT",
    "FLOW_IOU",
    "NONEMPTY",
    "CORRELATION",
    "FRACTIONS",
    "PREFIX",
    "PRECISION",
    "SCORES",
    "SELECTIVITY",
    "SHARES",
    "STD",
    "TIMINGS",
    "WINDOW_METRICS",
    "agreement_tag",
    "band_tag",
    "behaviour_tag",
    "method_tag",
    "named",
]

PREFIX = "selrel"
STD = "_std"  # suffix of a mean's companion: the population standard deviation over clips (ddof = 0)

#: Motion precision against each motion ground truth: (baseline by area, selective by area, baseline by
#: mass, selective by mass). ``flow``: optical flow on the raw frames; ``exact``: the data's exact masks.
PRECISION: dict[str, tuple[str, str, str, str]] = {
    "flow": ("precision", "selective_precision", "precision_mass", "selective_precision_mass"),
    "exact": ("mask_precision", "selective_mask_precision", "mask_precision_mass", "selective_mask_precision_mass"),
}
#: How much of the relevance the selective map keeps: by the area ``R > 0``, by the relevance core, by mass;
#: and the spatial bias, 1 - mass.
SELECTIVITY: tuple[str, str, str, str] = ("selectivity_area", "selectivity_core", "selectivity_mass", "spatial_bias")
#: Spatial bias over the clips whose selective map is not empty (NaN for an empty one). An empty selective map
#: reads spatial bias 1.0, which says the threshold kept nothing, not that the model ignores motion: read this next
#: to ``selective_no_relevance``, the share of empty maps.
NONEMPTY = "spatial_bias_nonempty"
#: Per-clip scores of one method, fractions in [0, 1], logged as mean and ``_std``.
SCORES: tuple[str, ...] = (*PRECISION["flow"], *PRECISION["exact"], *SELECTIVITY, NONEMPTY)
#: Shares of the probe clips whose baseline / selective map has no positive relevance (no ``_std``).
SHARES: tuple[str, str] = ("no_relevance", "selective_no_relevance")
#: Milliseconds per clip of the explanation and of the selective step (a batch's time over its clips: no ``_std``).
TIMINGS: tuple[str, str] = ("explain_ms", "selective_ms")
#: Every per-method tag whose value is a fraction in [0, 1].
FRACTIONS: tuple[str, ...] = (*SCORES, *SHARES)
#: Agreement of two methods: IoU of their areas ``R > 0`` (the paper's Table 2), or of their relevance cores.
AGREEMENTS: tuple[str, str] = ("agreement", "agreement_core")
#: The model's behaviour with the motion removed (:mod:`lightning_selrel.monitor.behaviour`),
#: ``selrel/behaviour/<name>``: accuracies and shares of clips (no ``_std``), and ``reliance``, the probability lost
#: when frozen (with ``_std``).
BEHAVIOUR: tuple[str, ...] = (
    "acc",
    "acc_frozen",
    "acc_shuffled",
    "acc_reversed",
    "unchanged_frozen",
    "contrasted_acc",
    "reliance",
)
#: On cue-conflict clips (motion one class, context another; :mod:`lightning_selrel.data.conflict`),
#: ``selrel/behaviour/<name>``: ``conflict_motion_share``, the share of predictions that follow the motion among
#: those that follow either cue (1: decides from motion, 0: from context); ``conflict_neither_share``, the share of
#: all predictions that follow neither; ``conflict_motion_prob``, per clip p(motion class) / (p(motion class) +
#: p(context class)), the same question without the argmax (with ``_std``).
CONFLICT: tuple[str, str, str] = ("conflict_motion_share", "conflict_neither_share", "conflict_motion_prob")
#: Per method, with a calibration: spatial bias on its scale (0: the motion reference, 1: the static one), with
#: ``_std``.
CALIBRATED = "spatial_bias_calibrated"
#: Where the data give exact motion masks (the built-in data): how well the optical-flow mask matches them, the
#: IoU of the two masks per probe clip (mean and ``_std``). Flow precision is measured against a mask this wrong.
FLOW_IOU = f"{PREFIX}/probe/flow_iou"
#: Per method: Spearman's rank correlation over probe clips between spatial bias and behavioural reliance.
CORRELATION = "bias_reliance_spearman"
#: What the ``explain`` command reports per method and window (it has no exact masks).
WINDOW_METRICS: tuple[str, ...] = (*PRECISION["flow"], *SELECTIVITY, NONEMPTY, *TIMINGS)


def method_tag(method: str, name: str) -> str:
    """``selrel/<method>/<name>``."""
    return f"{PREFIX}/{method}/{name}"


def behaviour_tag(name: str) -> str:
    """``selrel/behaviour/<name>``, ``name`` one of :data:`BEHAVIOUR` or :data:`CONFLICT`."""
    return f"{PREFIX}/behaviour/{name}"


def band_tag(tag: str, side: str) -> str:
    """The mean - std (``side="lower"``) or mean + std (``"upper"``) of ``tag``, for TensorBoard's margin charts:
    ``selrel_band/<the rest of tag>/<side>``, outside the ``selrel`` group so the Scalars tab stays readable."""
    return f"{PREFIX}_band/{tag.removeprefix(PREFIX + '/')}/{side}"


def agreement_tag(kind: str, first: str, second: str) -> str:
    """``selrel/<kind>/<first>_vs_<second>``, ``kind`` one of :data:`AGREEMENTS`."""
    return f"{PREFIX}/{kind}/{first}_vs_{second}"


def named(tag: str, name: str | None) -> str:
    """``tag`` of a monitor called ``name``: ``selrel/<name>/<the rest>`` (and ``selrel_band/<name>/<the rest>``),
    so that several monitors of one run (say a ``std`` and a ``mad`` one) log apart; ``tag`` itself when ``name``
    is None or empty, and any tag outside the monitor's groups (``val/acc``) as it is."""
    if not name:
        return tag
    for group in (f"{PREFIX}/", f"{PREFIX}_band/"):
        if tag.startswith(group):
            return f"{group}{name}/{tag[len(group) :]}"
    return tag
