"""A scale for spatial bias, from two reference models trained on the user's own clips.

Spatial bias has no meaning on its own: it moves with ``n_std``, the threshold rule and the method, and a model
that can only use motion still reads about 0.8. :func:`calibrate` trains, with the user's architecture and a
small budget, two references whose reliance on motion is known by construction:

- the **static reference** is trained on *frozen* clips (one random frame repeated over T) with the true labels:
  it can only use appearance;
- the **motion reference** is trained on a *speed* task: each long window of ``3 T`` frames gives two clips of
  the same videos and positions, its middle ``T`` frames (normal speed, class 0) and every third frame (3x speed,
  class 1). Both freeze to the same middle frame, so appearance cannot solve the task; only motion can. (Chosen
  by measurement on real public videos: a small C3D told normal from 3x speed with 0.87 validation accuracy and
  frozen-clip accuracy at chance, 0.49, while forward versus reversed playback stayed at chance, 0.43.)

Both are explained on the same moving probe clips (the user's validation clips; a clean still shot, whose
selective relevance has no motion to follow, is replaced by another clip, :func:`moves`) with every method, over a grid
of ``n_std`` and both threshold rules, at the monitor's other settings (GradCAM layer, signed, target), which the
file records. For each setting the two references' mean spatial bias span a scale (0 = the motion reference, 1 =
the static reference) and their *separation*, paired over the clips (the mean per-clip difference over its
standard deviation), says how well that setting can see a difference. The setting of widest separation on one
half of the probe clips is recommended when it also separates the references by at least
:data:`MIN_SEPARATION` on the other half, which is the separation reported. The command refuses to recommend
(and says why) when a reference did not learn its task, the static reference is not static (its predictions
change when the probe clips are frozen) or no setting separates the references; a refused calibration, one made
at other settings, and a setting where the references do not separate give no calibrated value.

A data module takes part through ``long_clips(stage, factor)``: a dataset of the stage's clips with ``factor``
times as many frames (the built-in data and UCF-101 have it).
"""

from lightning_selrel.monitor.calibration.references import (
    MIN_MOTION,
    MIN_PROBE_MOTION,
    SPEED_CLASSES,
    SPEED_FACTOR,
    FrozenClips,
    SpeedClips,
    elapsed,
    judge,
    learned,
    motion_energy,
    moves,
    probe_loader,
    reference_behaviour,
    subset,
)
from lightning_selrel.monitor.calibration.report import cannot_tell, plot_png, report_markdown, write_outputs
from lightning_selrel.monitor.calibration.scale import (
    CALIBRATION_VERSION,
    DEFAULT_GRID,
    MIN_SEPARATION,
    SETTINGS,
    THRESHOLDS,
    Calibration,
    CalibrationError,
    calibrated,
    halves,
    load_calibration,
    map_settings,
    per_clip_bias,
    recommend,
    scale_of,
    unusable,
    why_none,
)
from lightning_selrel.monitor.calibration.training import (
    ReferenceData,
    ReferenceSteward,
    evaluate,
    reference_like,
    train_reference,
)

__all__ = [
    "cannot_tell",
    "CALIBRATION_VERSION",
    "DEFAULT_GRID",
    "MIN_MOTION",
    "MIN_PROBE_MOTION",
    "MIN_SEPARATION",
    "SETTINGS",
    "SPEED_CLASSES",
    "SPEED_FACTOR",
    "THRESHOLDS",
    "Calibration",
    "CalibrationError",
    "ReferenceData",
    "ReferenceSteward",
    "FrozenClips",
    "SpeedClips",
    "calibrated",
    "elapsed",
    "evaluate",
    "halves",
    "judge",
    "learned",
    "load_calibration",
    "motion_energy",
    "moves",
    "map_settings",
    "per_clip_bias",
    "plot_png",
    "probe_loader",
    "recommend",
    "reference_behaviour",
    "reference_like",
    "report_markdown",
    "scale_of",
    "subset",
    "train_reference",
    "unusable",
    "why_none",
    "write_outputs",
]
