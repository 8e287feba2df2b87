"""The spatial-bias monitor: explains fixed validation clips during training and logs how much of the
model's relevance is motion and how much is static context.

Every ``every_n_epochs`` validation epoch the callback explains a fixed probe set of validation clips
with each method, keeps the relevance that changes over time (selective relevance), and logs, per
method ``<m>`` (fractions in [0, 1]; each mean has a ``_std`` companion, the population standard
deviation over the probe clips, ddof = 0):

- ``selrel/<m>/precision``, ``selrel/<m>/selective_precision``: motion precision of the baseline and
  the selective map against optical flow, by area (the paper's Table 1, relevant = ``R > 0``);
- ``selrel/<m>/precision_mass``, ``selrel/<m>/selective_precision_mass``: the share of the positive
  relevance on moving voxels (informative for DTD too, whose every voxel is ``R > 0``);
- ``selrel/<m>/mask_precision``, ``selrel/<m>/selective_mask_precision`` and their ``_mass`` twins:
  the same against exact motion masks, when the data provide them (the built-in dataset does);
- ``selrel/<m>/selectivity_area`` (Table 3, by the area ``R > 0``), ``selrel/<m>/selectivity_core``
  (the share of the relevance core, the fewest voxels holding ``core_mass`` of the positive relevance,
  that the selective map keeps), ``selrel/<m>/selectivity_mass``, and ``selrel/<m>/spatial_bias`` =
  1 - mass: the share of positive relevance that stays constant in time;
- ``selrel/<m>/no_relevance``, ``selrel/<m>/selective_no_relevance``: the share of probe clips whose
  baseline (selective) map has no positive relevance; they have no value and are left out of the means,
  and a mean with no clip at all is not logged (plain GradCAM often selects nothing);
- ``selrel/<m>/explain_ms``, ``selrel/<m>/selective_ms``: milliseconds per clip (Table 4): the time of
  a batch of probe clips divided by its clips, so no spread over clips is logged;
- ``selrel/agreement/<a>_vs_<b>`` (Table 2, IoU of the areas ``R > 0``) and
  ``selrel/agreement_core/<a>_vs_<b>`` (IoU of the two methods' relevance cores);

and, on rank 0 with a TensorBoard logger, animated GIFs ``selrel/<m>/clip_<k>`` (input | baseline |
selective) and a custom-scalars layout "selrel: spatial bias".

Several monitors in one run (say one with ``threshold="std"`` and one with ``"mad"``) each take a ``name``: a
named monitor logs under ``selrel/<name>/...``, keeps its state in checkpoints under its own ``state_key``, adds
its charts to the run's layout and its columns to the run's one HParams entry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from typing_extensions import override

from lightning_selrel._lightning import Callback, MisconfigurationException, pl, rank_zero_info, rank_zero_warn
from lightning_selrel.metrics import tags
from lightning_selrel.metrics.flow import FLOW_METHODS
from lightning_selrel.metrics.functional import rank_correlation
from lightning_selrel.mitigation.callback import mitigation_of
from lightning_selrel.monitor import dashboard, measuring
from lightning_selrel.monitor.behaviour import behaviour as behaviour_scores
from lightning_selrel.monitor.behaviour import reliance_for_ranking
from lightning_selrel.monitor.calibration import (
    Calibration,
    CalibrationError,
    load_calibration,
    moves,
)
from lightning_selrel.monitor.conflict import ConflictProbe, conflict_source
from lightning_selrel.monitor.probe_set import ProbeSet, choose_indices, dataset_labels, load_probe, stage_dataset
from lightning_selrel.monitor.writers import MonitorMedia
from lightning_selrel.relevance.methods import available_methods, check_methods, check_model
from lightning_selrel.relevance.selective import THRESHOLDS, Threshold

__all__ = ["SelectiveRelevanceMonitor", "DEFAULT_METHODS"]

DEFAULT_METHODS = ("dtd", "gradcam", "guided_backprop", "guided_gradcam")


class SelectiveRelevanceMonitor(Callback):
    """Explain fixed validation clips during training and log motion precision, selectivity and spatial bias.

    Args:
        methods: Explanation methods (see :func:`lightning_selrel.available_methods`).
        name: This monitor's name, for a run with several monitors (letters, digits, ``_``, ``-``; not a
            method's or a tag group's name): its tags become ``selrel/<name>/<m>/...`` (bands
            ``selrel_band/<name>/...``), its dashboard categories ``selrel (<name>): ...``, its per-class CSV
            ``selrel_<name>_per_class.csv`` and its ``state_key`` ``SelectiveRelevanceMonitor[<name>]``. Default:
            unnamed, the tags as listed above (one unnamed monitor per run; its checkpoints' state key is the
            class name, as in every earlier release).
        n_std: Selective relevance keeps voxels whose temporal edge exceeds ``n_std`` standard
            deviations of the clip's edge map. Compare models and epochs at the same ``n_std``.
        num_clips: Probe clips, drawn once from the validation set (all of them if it is smaller).
        every_n_epochs: Run at the validation of every n-th training epoch of ``fit``, as Lightning's
            ``check_val_every_n_epoch`` counts (always in ``validate``/``test``). With
            ``val_check_interval < 1`` it runs at every validation inside such an epoch.
        target: Explain the ``"predicted"`` class or the true ``"label"``.
        flow_method: Optical flow for the motion ground truth: ``"farneback"`` or ``"dis"``.
        flow_threshold: A pixel moves where the flow magnitude exceeds this many pixels. The default, 1.5, gives the
            flow mask its best IoU with the exact masks of the built-in data (0.27 with Farneback; 0.20 at 0.5 px,
            where flow marks 21% of the voxels against 4% that move: ``benchmarks/bench_flow_threshold.py``). Its
            objects move at 1.5-2.5 px per frame; on real video with slower motion (about 1 px per frame in a
            112-px clip) choose a lower one. ``selrel/probe/flow_iou`` logs the IoU where the data give exact
            masks.
        num_videos: Probe clips rendered as heatmap GIFs per method (0: none).
        fps: Frame rate of the GIFs.
        signed: Keep only relevance that appears over time (the default keeps both directions).
        seed: Seed of the probe-set draw.
        batch_size: Probe clips explained per pass (bounds the memory of an explanation).
        threshold: Threshold rule of the selective step: ``"std"`` (the paper's ``n_std`` standard
            deviations of the edge map) or ``"mad"`` (median plus ``n_std`` robust standard deviations; it
            does not select nothing when change is widespread, as with camera motion).
        core_mass: The relevance *core* of a map is the fewest voxels holding this share of its positive
            relevance; ``selectivity_core`` and ``agreement_core`` use it as the relevant area.
        behaviour: Also log the model's behaviour on the probe clips with the motion removed or scrambled
            (``selrel/behaviour/...``: four extra forward passes per clip) and, per method, the rank correlation of
            spatial bias with motion reliance; and, where the data module offers cue-conflict clips
            (``conflict_clips(stage)``, :mod:`lightning_selrel.data.conflict`), which cue the model follows on them
            (``selrel/behaviour/conflict_motion_share`` and its companions).
        num_conflict_clips: Cue-conflict clips drawn once (from ``seed``) and predicted at every measurement, when
            ``behaviour`` is on and the data module offers them (0: none). One forward pass per clip.
        per_class: Draw the probe set stratified by class, this many clips per class (all of a smaller class),
            instead of ``num_clips`` at random. The per-class table and chart are written either way.
        gradcam_layer: The layer the GradCAM family reads, a dotted module name (default: the layer the network
            declares in its ``gradcam_layer`` attribute, else its last Conv3d; see :func:`resolve_layer`).
        calibration: A ``calibration.json`` written by ``python -m lightning_selrel calibrate`` (or its folder):
            also log ``selrel/<m>/spatial_bias_calibrated``, the spatial bias on its scale (0 = the motion
            reference, 1 = the static reference, not clipped). It must have measured every method, this
            ``n_std`` and ``threshold``, at this ``signed``, ``target`` and ``gradcam_layer``, with the model's input
            normalisation and clips of its shape, and not been refused; otherwise it is refused, naming the
            mismatch. A method whose references do not separate at this setting (gap <= 0, or separation below
            the calibration's minimum) gets no calibrated value, and the monitor says once why.
    """

    def __init__(
        self,
        methods: Sequence[str] = DEFAULT_METHODS,
        n_std: float = 4.0,
        num_clips: int = 8,
        every_n_epochs: int = 1,
        target: Literal["predicted", "label"] = "predicted",
        flow_method: str = "farneback",
        flow_threshold: float = 1.5,
        num_videos: int = 2,
        fps: float = 8.0,
        signed: bool = False,
        seed: int = 0,
        batch_size: int = 8,
        threshold: Threshold = "std",
        core_mass: float = 0.5,
        behaviour: bool = True,
        per_class: int | None = None,
        calibration: str | None = None,
        gradcam_layer: str | None = None,
        num_conflict_clips: int = 64,
        name: str | None = None,
    ) -> None:
        super().__init__()
        methods = check_methods(methods)
        self.name = check_name(name)
        if threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {list(THRESHOLDS)}, got {threshold!r}")
        if not 0 < core_mass <= 1:
            raise ValueError(f"core_mass must be in (0, 1], got {core_mass}")
        if per_class is not None and per_class < 1:
            raise ValueError(f"per_class must be at least 1 (or null for a draw of num_clips), got {per_class}")
        self.calibration_path = str(calibration) if calibration is not None else None
        self.calibration: Calibration | None = None
        if target not in ("predicted", "label"):
            raise ValueError(f"target must be 'predicted' or 'label', got {target!r}")
        #: Per method, why the calibration gives it no value (the references do not separate at this setting).
        self.uncalibrated: dict[str, str] = {}
        #: Per method, why its selective scores are not reported (its map has too few time steps).
        self.unresolved: dict[str, str] = {}
        if calibration is not None:
            self.calibration = load_calibration(calibration)
            self.calibration.check(self.calibration_path, signed=bool(signed), target=target)  # and refused ones
            self.uncalibrated = self.calibration.unusable_for(methods, threshold, n_std)  # measured, and separate?
        if flow_method not in FLOW_METHODS:
            raise ValueError(f"unknown flow_method {flow_method!r}; valid: {', '.join(FLOW_METHODS)}")
        for name, value, low in (
            ("n_std", n_std, 0),
            ("num_clips", num_clips, 1),
            ("every_n_epochs", every_n_epochs, 1),
            ("num_videos", num_videos, 0),
            ("batch_size", batch_size, 1),
            ("flow_threshold", flow_threshold, 0),
            ("num_conflict_clips", num_conflict_clips, 0),
        ):
            if not math.isfinite(value) or value < low:
                raise ValueError(f"{name} must be a finite number of at least {low}, got {value}")
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive finite number, got {fps}")
        self.methods = methods
        self.n_std = float(n_std)
        self.num_clips = int(num_clips)
        self.every_n_epochs = int(every_n_epochs)
        self.target = target
        self.flow_method = flow_method
        self.flow_threshold = float(flow_threshold)
        self.num_videos = int(num_videos)
        self.fps = float(fps)
        self.signed = bool(signed)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.threshold = threshold
        self.core_mass = float(core_mass)
        self.behaviour = bool(behaviour)
        self.per_class = int(per_class) if per_class is not None else None
        self.gradcam_layer = gradcam_layer
        self.num_conflict_clips = int(num_conflict_clips)

        self.probe_indices: dict[str, list[int]] = {}  # stage -> dataset indices; saved in checkpoints
        self._probes: dict[str, ProbeSet] = {}
        self._conflicts: dict[str, ConflictProbe | None] = {}  # stage -> this rank's cue-conflict clips
        self._warned: set[str] = set()
        self._media = MonitorMedia(self.name)

    @property
    @override
    def state_key(self) -> str:
        """Where checkpoints keep this monitor's state: the class name (unnamed, as in every earlier release), or
        ``SelectiveRelevanceMonitor[<name>]``, so that several named monitors of one run each keep theirs."""
        return f"{type(self).__qualname__}[{self.name}]" if self.name else type(self).__qualname__

    def tag(self, tag: str) -> str:
        """``tag`` as this monitor logs it (:func:`lightning_selrel.metrics.tags.named`)."""
        return tags.named(tag, self.name)

    # -- preconditions -------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._probes.clear()  # loaded clips are this rank's share: a new trainer may split them differently
        self._conflicts.clear()
        sharded = type(getattr(trainer, "strategy", None)).__name__
        if any(kind in sharded for kind in ("FSDP", "DeepSpeed")):
            raise MisconfigurationException(
                f"SelectiveRelevanceMonitor cannot serve the {sharded} strategy: it shards the model across ranks, "
                "and the monitor explains the whole model on each rank's probe clips (a rank without clips would "
                "skip the forward the others wait for, and the run would hang); train with strategy=ddp, or remove "
                "the monitor from trainer.callbacks"
            )
        try:  # the model's requirements (explain.check_model), before any training step
            check_model(pl_module, self.methods, layer=self.gradcam_layer)
        except ValueError as error:
            raise MisconfigurationException(f"SelectiveRelevanceMonitor: {error}") from None
        if self.calibration is not None:  # the layer and the normalisation are the model's
            try:
                self.calibration.check_model(self.calibration_path, pl_module, self.methods, self.gradcam_layer)
            except CalibrationError as error:
                raise MisconfigurationException(f"SelectiveRelevanceMonitor: {error}") from None
        if stage == "fit":
            if trainer.limit_val_batches == 0:
                raise MisconfigurationException(
                    "SelectiveRelevanceMonitor explains validation clips, but limit_val_batches=0 turns validation "
                    "off. Enable validation or remove the monitor from trainer.callbacks."
                )
            source = getattr(getattr(trainer.fit_loop.epoch_loop, "val_loop", None), "_data_source", None)
            if source is not None and not source.is_defined():
                raise MisconfigurationException(
                    "SelectiveRelevanceMonitor needs validation data: define val_dataloader() in the data module "
                    "(or pass val_dataloaders to fit), or remove the monitor from trainer.callbacks."
                )
            val_set = getattr(trainer.datamodule, "val_set", None)
            if val_set is not None and len(val_set) == 0:
                raise MisconfigurationException(
                    "SelectiveRelevanceMonitor explains validation clips, but the validation set is empty: set "
                    "data.val_size > 0, or remove the monitor (--trainer.callbacks=[])"
                )

    def _say_which_draw(self, stage: str, stored: list[int] | None, indices: list[int]) -> None:
        """After a resume with other probe settings, say which probe set this run uses, once."""
        restored = getattr(self, "_restored_settings", {})
        differ = {k: (v, restored[k]) for k, v in self._draw_settings().items() if k in restored and restored[k] != v}
        if not stored or not differ or f"draw-{stage}" in self._warned:
            return
        self._warned.add(f"draw-{stage}")
        settings = ", ".join(f"{k}={now} (the checkpoint's: {then})" for k, (now, then) in differ.items())
        if indices == stored:
            rank_zero_warn(
                f"SelectiveRelevanceMonitor: this monitor has {settings}; keeping the checkpoint's probe set of "
                f"{len(stored)} {stage} clips so that epochs stay comparable (indices {stored})"
            )
        # Otherwise choose_indices has said that it drew a new probe set.

    def _check_calibration(self, probe: ProbeSet) -> None:
        """A calibration made for other clips is refused, naming both shapes."""
        if self.calibration is None or "calibration" in self._warned:
            return
        shape = [int(s) for s in probe.clips.shape[2:]]
        if shape and list(self.calibration.clip_shape) != shape:
            raise MisconfigurationException(
                f"SelectiveRelevanceMonitor: calibration {self.calibration_path} was made for clips "
                f"{self.calibration.clip_shape} (T, H, W), the probe clips are {shape}; calibrate with this data"
            )
        self._warned.add("calibration")
        calibrated = [m for m in self.methods if m not in self.uncalibrated]
        if calibrated:
            rank_zero_info(
                f"SelectiveRelevanceMonitor: spatial bias of {', '.join(calibrated)} calibrated with "
                f"{self.calibration_path} at n_std={self.n_std:g}, threshold={self.threshold} (0 = its motion "
                "reference, 1 = its static reference)"
            )
        minimum = self.calibration.probe.get("min_probe_motion") or 0.0
        still = sum(not moves(clip, minimum) for clip in probe.clips) if calibrated and minimum > 0 else 0
        if still:  # the scale was measured on moving clips only
            rank_zero_warn(
                f"SelectiveRelevanceMonitor: {still} of this rank's {len(probe.clips)} probe clips hardly move (mean "
                f"frame difference below {minimum:g} grey levels); {self.calibration_path} was measured on moving "
                "clips only, so the calibrated value of a mean that includes them is less certain"
            )
        for method, reason in self.uncalibrated.items():
            rank_zero_warn(
                f"SelectiveRelevanceMonitor: no calibrated spatial bias for {method}: in {self.calibration_path}, "
                f"{reason} (n_std={self.n_std:g}, threshold={self.threshold}); its raw spatial bias is still logged"
            )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_hparams(trainer, pl_module)

    # -- when to run ---------------------------------------------------------------------------
    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "fit" and (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        self._run(trainer, pl_module, "val")

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module, "test")

    # -- checkpointing: the probe set survives a resume -----------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "probe_indices": {k: list(v) for k, v in self.probe_indices.items()},
            "probe_settings": self._draw_settings(),  # what drew them: a resume says which draw it keeps
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.probe_indices = {k: [int(i) for i in v] for k, v in state_dict.get("probe_indices", {}).items()}
        self._restored_settings = dict(state_dict.get("probe_settings") or {})
        self._probes.clear()

    def _settings(self) -> measuring.Settings:
        return measuring.Settings(
            methods=tuple(self.methods),
            n_std=self.n_std,
            threshold=self.threshold,
            signed=self.signed,
            target=self.target,
            batch_size=self.batch_size,
            core_mass=self.core_mass,
            num_videos=self.num_videos,
            gradcam_layer=self.gradcam_layer,
            calibration=self.calibration,
            unresolved=frozenset(self.unresolved),
        )

    def _draw_settings(self) -> dict[str, Any]:
        return {"seed": self.seed, "num_clips": self.num_clips, "per_class": self.per_class}

    # -- the work ------------------------------------------------------------------------------
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        probe = self._probe(trainer, stage)
        values, maps, bias = measuring.measure(pl_module, probe, self._settings())
        per_clip = {"label": probe.labels.to(torch.float64), **{f"bias/{m}": b.cpu() for m, b in bias.items()}}
        if self.behaviour:
            clips = probe.clips.to(pl_module.device)
            scores = behaviour_scores(pl_module, clips, probe.labels, batch_size=self.batch_size)
            measuring.log_behaviour(values, scores, pl_module.device)
            per_clip.update(correct=scores["acc"], reliance=scores["reliance"])
            conflict = self._conflict(trainer, stage)
            if conflict is not None:
                values.update(conflict.measure(trainer, pl_module, self.batch_size))
        per_clip = measuring.gather(trainer, pl_module, per_clip, len(probe.indices))  # every rank's clips
        if self.behaviour:
            ranked = reliance_for_ranking(per_clip["reliance"])  # ties, not noise, where nothing moves
            for method in self.methods:
                rho = rank_correlation(per_clip[f"bias/{method}"], ranked)
                if not math.isnan(rho):
                    values[tags.method_tag(method, tags.CORRELATION)] = rho
        calibrated = self.calibration is not None
        values.update(dashboard.bands(values, dashboard.banded_tags(self.methods, self.behaviour, calibrated)))
        for key, value in values.items():
            pl_module.log(self.tag(key), value, on_step=False, on_epoch=True, sync_dist=False)
        if trainer.is_global_zero:
            if self.num_videos > 0:
                self._write_media(trainer, pl_module, probe, maps)
            self._write_per_class(trainer, pl_module, per_clip)

    def _probe(self, trainer: pl.Trainer, stage: str) -> ProbeSet:
        if stage in self._probes:
            return self._probes[stage]
        dataset = stage_dataset(trainer, stage)
        stored = self.probe_indices.get(stage)
        labels = dataset_labels(dataset) if self.per_class is not None else None
        indices = choose_indices(
            len(dataset), self.num_clips, self.seed, stored=stored, stage=stage, labels=labels, per_class=self.per_class
        )
        self._say_which_draw(stage, stored, indices)
        self.probe_indices[stage] = indices
        probe = load_probe(
            dataset,
            indices,
            world_size=trainer.world_size,
            rank=trainer.global_rank,
            flow_method=self.flow_method,
            flow_threshold=self.flow_threshold,
            stage=stage,
        )
        self._check_calibration(probe)
        self._check_resolution(trainer.lightning_module, probe)
        conflict = self.behaviour and self._conflict(trainer, stage) is not None
        self._write_layout(trainer, conflict)  # once the monitor knows what it can measure (no empty chart)
        self._probes[stage] = probe
        return probe

    def _conflict(self, trainer: pl.Trainer, stage: str) -> ConflictProbe | None:
        """This rank's cue-conflict clips of ``stage``, loaded once; None where the data module offers none."""
        if stage not in self._conflicts:
            dataset = conflict_source(trainer, stage) if self.num_conflict_clips > 0 else None
            self._conflicts[stage] = (
                None
                if dataset is None
                else ConflictProbe(
                    dataset, self.num_conflict_clips, self.seed, world_size=trainer.world_size, rank=trainer.global_rank
                )
            )
        return self._conflicts[stage]

    def _check_resolution(self, pl_module: pl.LightningModule, probe: ProbeSet) -> None:
        """GradCAM and gradcam_t on a layer with fewer than three time steps report no selective scores
        (:func:`.measuring.unresolved`); the monitor says once why."""
        found = measuring.unresolved(pl_module, self.methods, probe.clips.shape[1:], self.gradcam_layer)
        for method, reason in found.items():
            if method not in self.unresolved:
                rank_zero_warn(
                    f"SelectiveRelevanceMonitor: no spatial bias, selectivity or selective precision for {method}: "
                    f"{reason}; name an earlier layer with gradcam_layer (e.g. C3D's net.conv4b), or read "
                    "guided_gradcam, whose map has the clip's resolution"
                )
        self.unresolved = found

    # -- media, tables, layout and HParams (rank 0; monitor/writers.py) ------------------------------
    def _write_layout(self, trainer: pl.Trainer, conflict: bool) -> None:
        if trainer.is_global_zero:
            calibrated = self.calibration is not None
            charts = dashboard.layout(
                self.methods,
                behaviour=self.behaviour,
                calibrated=calibrated,
                unresolved=self.unresolved,
                conflict=conflict,
                name=self.name,
            )
            self._media.write_layout(trainer, charts)

    def _write_media(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, probe: ProbeSet, maps: dict[str, Any]
    ) -> None:
        self._media.write_clips(trainer, pl_module, probe, maps, n_std=self.n_std, fps=self.fps)

    def _write_per_class(self, trainer: pl.Trainer, pl_module: pl.LightningModule, per_clip: dict[str, Tensor]) -> None:
        self._media.write_per_class(
            trainer, pl_module, per_clip, self.methods, n_std=self.n_std, threshold=self.threshold
        )

    def _write_hparams(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The run's entry in the HParams tab: what the comparison turns on, with the final val/acc and spatial
        bias per method as its metric columns. Written before Lightning's own (TensorBoard keeps the first); with
        several monitors, the first writes one entry with every monitor's settings and columns."""
        monitors = [c for c in trainer.callbacks if isinstance(c, SelectiveRelevanceMonitor)]
        if not trainer.is_global_zero or (monitors and monitors[0] is not self):
            return
        model = dict(getattr(pl_module, "hparams", {}) or {})
        data = dict(getattr(trainer.datamodule, "hparams", {}) or {}) if trainer.datamodule is not None else {}
        optimizers = getattr(trainer, "optimizers", None) or []
        # No key is a folder of another ("model" beside "model/width"): MLflow's file store keeps a param per file.
        params: dict[str, Any] = {
            "model/class": type(pl_module).__name__,
            "model/width": model.get("width"),
            "model/arch": model.get("arch"),
            "data/class": type(trainer.datamodule).__name__ if trainer.datamodule is not None else None,
            "data/cue": data.get("cue"),
            "data/camera_speed": data.get("camera_speed"),
            "optimizer": type(optimizers[0]).__name__ if optimizers else None,
            "lr": optimizers[0].param_groups[0]["lr"] if optimizers else None,
            "mitigation": mitigation_of(trainer),
        }
        metrics = ["val/acc"]
        for monitor in monitors or [self]:
            own_params, own_metrics = monitor._hparams()
            params.update(own_params)
            metrics += [m for m in own_metrics if m not in metrics]
        self._media.write_hparams(trainer, params, metrics)

    def _hparams(self) -> tuple[dict[str, Any], list[str]]:
        """This monitor's settings and metric columns of the HParams entry, under its tags."""
        params: dict[str, Any] = {
            "selrel/methods": ",".join(self.methods),
            "selrel/n_std": self.n_std,
            "selrel/threshold": self.threshold,
            "selrel/probe_clips": self.num_clips if self.per_class is None else f"{self.per_class} per class",
            "selrel/target": self.target,
        }
        metrics = [tags.method_tag(m, "spatial_bias") for m in self.methods]
        if self.behaviour:  # does the model use motion, by behaviour: the columns a mitigation should move
            metrics += [tags.behaviour_tag(name) for name in ("acc_frozen", "reliance", tags.CONFLICT[0])]
        if self.calibration is not None:
            metrics += [tags.method_tag(m, tags.CALIBRATED) for m in self.methods if m not in self.uncalibrated]
            params["selrel/calibration/file"] = self.calibration_path
            for method in self.methods:  # how far apart the references are where this monitor reads them
                point = self.calibration.point(method, self.threshold, self.n_std)
                params[f"selrel/calibration/{method}/gap"] = point.get("gap")
                params[f"selrel/calibration/{method}/separation"] = point.get("separation")
        return {self.tag(k): v for k, v in params.items()}, [self.tag(m) for m in metrics]


#: Names a monitor may not take: each is already a group of an unnamed monitor's tags (``selrel/<group>/...``).
_TAG_GROUPS = ("behaviour", "probe", "per_class", "calibration", *tags.AGREEMENTS)


def check_name(name: str | None) -> str | None:
    """A monitor's ``name`` (None or empty: unnamed), or a ValueError naming what is wrong and the fix."""
    if name is None or name == "":
        return None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(
            f"name must be letters, digits, '_' or '-' (it becomes a tag group, selrel/<name>/...), got {name!r}"
        )
    taken = {*_TAG_GROUPS, *available_methods()}
    if name in taken:
        raise ValueError(
            f"name {name!r} is already a group of the monitor's tags (selrel/{name}/...); choose another, such as "
            f"{name}_monitor"
        )
    return name
