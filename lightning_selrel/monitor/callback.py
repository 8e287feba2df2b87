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
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from lightning_selrel.metrics import tags
from lightning_selrel.metrics.flow import FLOW_METHODS
from lightning_selrel.metrics.functional import clip_scores, rank_correlation, relevance_agreement
from lightning_selrel.metrics.modules import MeanStd
from lightning_selrel.monitor import dashboard
from lightning_selrel.monitor.behaviour import behaviour as behaviour_scores
from lightning_selrel.monitor.behaviour import reliance_for_ranking
from lightning_selrel.monitor.calibration import Calibration, calibrated, load_calibration
from lightning_selrel.monitor.probe_set import ProbeSet, choose_indices, dataset_labels, load_probe, stage_dataset
from lightning_selrel.monitor.render import render_panels, write_gif
from lightning_selrel.relevance.measure import explain_selective
from lightning_selrel.relevance.methods import check_methods, check_model, method_options
from lightning_selrel.relevance.selective import THRESHOLDS, Threshold

__all__ = ["SelectiveRelevanceMonitor", "DEFAULT_METHODS"]

DEFAULT_METHODS = ("dtd", "gradcam", "guided_backprop", "guided_gradcam")


class SelectiveRelevanceMonitor(Callback):
    """Explain fixed validation clips during training and log motion precision, selectivity and spatial bias.

    Args:
        methods: Explanation methods (see :func:`lightning_selrel.available_methods`).
        n_std: Selective relevance keeps voxels whose temporal edge exceeds ``n_std`` standard
            deviations of the clip's edge map. Compare models and epochs at the same ``n_std``.
        num_clips: Probe clips, drawn once from the validation set (all of them if it is smaller).
        every_n_epochs: Run at the validation of every n-th training epoch of ``fit``, as Lightning's
            ``check_val_every_n_epoch`` counts (always in ``validate``/``test``). With
            ``val_check_interval < 1`` it runs at every validation inside such an epoch.
        target: Explain the ``"predicted"`` class or the true ``"label"``.
        flow_method: Optical flow for the motion ground truth: ``"farneback"`` or ``"dis"``.
        flow_threshold: A pixel moves where the flow magnitude exceeds this many pixels.
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
            spatial bias with motion reliance.
        per_class: Draw the probe set stratified by class, this many clips per class (all of a smaller class),
            instead of ``num_clips`` at random. The per-class table and chart are written either way.
        gradcam_layer: The layer the GradCAM family reads, a dotted module name (default: the layer the network
            declares in its ``gradcam_layer`` attribute, else its last Conv3d; see :func:`resolve_layer`).
        calibration: A ``calibration.json`` written by ``python -m lightning_selrel calibrate`` (or its folder):
            also log ``selrel/<m>/spatial_bias_calibrated``, the spatial bias on its scale (0 = the motion
            reference, 1 = the static reference, not clipped). It must have measured every method, this
            ``n_std`` and ``threshold``, and clips of the model's shape; otherwise it is refused, naming the mismatch.
    """

    def __init__(
        self,
        methods: Sequence[str] = DEFAULT_METHODS,
        n_std: float = 4.0,
        num_clips: int = 8,
        every_n_epochs: int = 1,
        target: Literal["predicted", "label"] = "predicted",
        flow_method: str = "farneback",
        flow_threshold: float = 0.5,
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
    ) -> None:
        super().__init__()
        methods = check_methods(methods)
        if threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {list(THRESHOLDS)}, got {threshold!r}")
        if not 0 < core_mass <= 1:
            raise ValueError(f"core_mass must be in (0, 1], got {core_mass}")
        if per_class is not None and per_class < 1:
            raise ValueError(f"per_class must be at least 1 (or null for a draw of num_clips), got {per_class}")
        self.calibration_path = str(calibration) if calibration is not None else None
        self.calibration: Calibration | None = None
        if calibration is not None:
            self.calibration = load_calibration(calibration)
            for method in methods:  # every setting this monitor uses must have been measured
                self.calibration.point(method, threshold, n_std)
        if target not in ("predicted", "label"):
            raise ValueError(f"target must be 'predicted' or 'label', got {target!r}")
        if flow_method not in FLOW_METHODS:
            raise ValueError(f"unknown flow_method {flow_method!r}; valid: {', '.join(FLOW_METHODS)}")
        for name, value, low in (
            ("n_std", n_std, 0),
            ("num_clips", num_clips, 1),
            ("every_n_epochs", every_n_epochs, 1),
            ("num_videos", num_videos, 0),
            ("batch_size", batch_size, 1),
            ("flow_threshold", flow_threshold, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
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

        self.probe_indices: dict[str, list[int]] = {}  # stage -> dataset indices; saved in checkpoints
        self._probes: dict[str, ProbeSet] = {}
        self._warned: set[str] = set()
        self._layout_written: set[int] = set()

    # -- preconditions -------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._probes.clear()  # loaded clips are this rank's share: a new trainer may split them differently
        try:  # the model's requirements (explain.check_model), before any training step
            check_model(pl_module, self.methods, layer=self.gradcam_layer)
        except ValueError as error:
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
        rank_zero_info(
            f"SelectiveRelevanceMonitor: spatial bias calibrated with {self.calibration_path} at n_std={self.n_std:g}, "
            f"threshold={self.threshold} (0 = its motion reference, 1 = its static reference)"
        )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_layout(trainer)
        self._write_hparams(trainer, pl_module)

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write_layout(trainer)

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_layout(trainer)

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

    def _draw_settings(self) -> dict[str, Any]:
        return {"seed": self.seed, "num_clips": self.num_clips, "per_class": self.per_class}

    # -- the work ------------------------------------------------------------------------------
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        probe = self._probe(trainer, stage)
        values, maps, bias = self._measure(pl_module, probe)
        per_clip = {"label": probe.labels.to(torch.float64), **{f"bias/{m}": b.cpu() for m, b in bias.items()}}
        if self.behaviour:
            clips = probe.clips.to(pl_module.device)
            scores = behaviour_scores(pl_module, clips, probe.labels, batch_size=self.batch_size)
            self._log_behaviour(values, scores, pl_module.device)
            per_clip.update(correct=scores["acc"], reliance=scores["reliance"])
        per_clip = self._gather(trainer, pl_module, per_clip, len(probe.indices))  # every rank's clips
        if self.behaviour:
            ranked = reliance_for_ranking(per_clip["reliance"])  # ties, not noise, where nothing moves
            for method in self.methods:
                rho = rank_correlation(per_clip[f"bias/{method}"], ranked)
                if not math.isnan(rho):
                    values[tags.method_tag(method, tags.CORRELATION)] = rho
        calibrated = self.calibration is not None
        values.update(dashboard.bands(values, dashboard.banded_tags(self.methods, self.behaviour, calibrated)))
        for name, value in values.items():
            pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=False)
        if trainer.is_global_zero:
            if self.num_videos > 0:
                self._write_media(trainer, pl_module, probe, maps)
            self._write_per_class(trainer, pl_module, per_clip)

    def _log_behaviour(self, values: dict[str, float], scores: dict[str, Tensor], device: torch.device) -> None:
        """Means over the probe clips (synced over ranks); ``reliance`` also gets its population std."""
        for name, per_clip in scores.items():
            result = self._compute(MeanStd(), device, per_clip)
            if name == "reliance":
                self._put(values, tags.behaviour_tag(name), result["mean"], result["std"])
            elif not torch.isnan(result["mean"]):
                values[tags.behaviour_tag(name)] = float(result["mean"])

    @staticmethod
    def _gather(
        trainer: pl.Trainer, pl_module: pl.LightningModule, columns: dict[str, Tensor], total: int
    ) -> dict[str, Tensor]:
        """Per-clip columns (n,) of this rank's share, gathered from every rank in probe order (contiguous shares)."""
        if trainer.world_size == 1:
            return {name: column.cpu().to(torch.float64) for name, column in columns.items()}
        names = list(columns)
        longest = len(np.array_split(np.arange(total), trainer.world_size)[0])
        rows = torch.full((longest, len(names) + 1), torch.nan, dtype=torch.float64)
        share = next(iter(columns.values())).shape[0]
        if share:
            rows[:share, :-1] = torch.stack([columns[name].cpu().to(torch.float64) for name in names], dim=1)
            rows[:share, -1] = 1.0  # this row holds a clip (padding rows do not)
        gathered = pl_module.all_gather(rows.to(pl_module.device)).reshape(-1, len(names) + 1).cpu()
        kept = gathered[gathered[:, -1] == 1.0]
        return {name: kept[:, i] for i, name in enumerate(names)}

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
        self._probes[stage] = probe
        return probe

    def _measure(
        self, pl_module: pl.LightningModule, probe: ProbeSet
    ) -> tuple[dict[str, float], dict[str, Any], dict[str, Tensor]]:
        """Explain this rank's probe clips with every method; returns synced scalars, this rank's maps and its
        per-clip spatial bias per method."""
        device = pl_module.device
        clips = probe.clips.to(device)
        flow = probe.flow_masks.to(device)
        exact = probe.exact_masks.to(device) if probe.exact_masks is not None else None
        target = probe.labels.to(device) if self.target == "label" else None
        values: dict[str, float] = {}
        relevance: dict[str, Tensor] = {}
        maps: dict[str, Any] = {}
        bias: dict[str, Tensor] = {}
        for method in self.methods:
            rel, sel, logits, explain_ms, selective_ms = self._explain(pl_module, clips, method, target)
            relevance[method] = rel
            maps[method] = (rel[: self.num_videos].cpu(), sel[: self.num_videos].cpu(), logits[: self.num_videos])
            scores = clip_scores(rel, sel, flow=flow, exact=exact, core_mass=self.core_mass)
            bias[method] = scores["spatial_bias"]
            if self.calibration is not None:
                point = self.calibration.point(method, self.threshold, self.n_std)
                values_on_scale = [calibrated(b, point) for b in scores["spatial_bias"].tolist()]  # NaN stays NaN
                scores[tags.CALIBRATED] = torch.tensor(values_on_scale, dtype=torch.float64, device=rel.device)
            for name, per_clip in scores.items():
                result = self._compute(MeanStd(), device, per_clip)
                self._put(values, tags.method_tag(method, name), result["mean"], result["std"])
                if name == "spatial_bias":  # NaN exactly where the baseline map has no positive relevance
                    values[tags.method_tag(method, "no_relevance")] = _share(result["skipped"], result["count"])
            empty = ((sel > 0).flatten(1).sum(1) == 0).to(torch.float64)  # (N,): the selective map is empty
            values[tags.method_tag(method, "selective_no_relevance")] = _mean_or_zero(
                self._compute(MeanStd(), device, empty)
            )
            # Clips are explained together, a batch at a time: a clip's cost is its batch's divided by its
            # clips, so a spread over clips would be a constant. Only the mean is logged.
            for name, samples in zip(tags.TIMINGS, (explain_ms, selective_ms), strict=True):
                values[tags.method_tag(method, name)] = _mean_or_zero(self._compute(MeanStd(), device, samples))
        for first, second in itertools.combinations(self.methods, 2):
            for kind, options in zip(tags.AGREEMENTS, ({}, {"relevant": "mass"}), strict=True):
                agreement = relevance_agreement(relevance[first], relevance[second], fraction=self.core_mass, **options)
                result = self._compute(MeanStd(), device, agreement)
                self._put(values, tags.agreement_tag(kind, first, second), result["mean"], result["std"])
        return values, maps, bias

    def _explain(
        self, pl_module: pl.LightningModule, clips: Tensor, method: str, target: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Relevance, selective relevance and logits of all clips, in chunks of ``batch_size``, with the
        per-clip milliseconds of the explanation and of the selective step."""
        rel, sel, logits, explain_ms, selective_ms = [], [], [], [], []
        for start in range(0, clips.shape[0], self.batch_size):
            chunk = clips[start : start + self.batch_size]
            n = chunk.shape[0]
            chunk_target = target[start : start + n] if target is not None else None
            options = method_options(method, layer=self.gradcam_layer)
            result = explain_selective(
                pl_module,
                chunk,
                method,
                chunk_target,
                n_std=self.n_std,
                threshold=self.threshold,
                signed=self.signed,
                **options,
            )
            rel.append(result.relevance)
            sel.append(result.selective)
            logits.append(result.logits.cpu())
            explain_ms.append(torch.full((n,), result.explain_ms / n, dtype=torch.float64))
            selective_ms.append(torch.full((n,), result.selective_ms / n, dtype=torch.float64))
        if not rel:  # this rank holds no probe clip: contribute nothing, but take part in the sync
            empty = torch.zeros((0, *clips.shape[2:]), device=clips.device)
            none = torch.zeros(0, dtype=torch.float64)
            return empty, empty.clone(), torch.zeros(0, 0), none, none.clone()
        return torch.cat(rel), torch.cat(sel), torch.cat(logits), torch.cat(explain_ms), torch.cat(selective_ms)

    @staticmethod
    def _compute(metric: Any, device: torch.device, *inputs: Tensor) -> dict[str, Tensor]:
        """Update a fresh metric with this rank's clips and compute it, synced over all ranks."""
        metric = metric.to(device)
        metric.update(*(x.to(device) for x in inputs))
        return metric.compute()

    @staticmethod
    def _put(values: dict[str, float], name: str, mean: Tensor, std: Tensor) -> None:
        """Store a mean and its ``_std`` companion; a metric without any valid clip is not logged."""
        if not torch.isnan(mean):
            values[name] = float(mean)
            values[name + tags.STD] = float(std)

    # -- TensorBoard media (rank 0) -------------------------------------------------------------
    def _tensorboard(self, trainer: pl.Trainer) -> Any:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        if "media" not in self._warned:
            self._warned.add("media")
            rank_zero_warn(
                "SelectiveRelevanceMonitor: no TensorBoardLogger (none configured, or fast_dev_run): scalars are "
                "logged, heatmap videos and the custom-scalars layout are skipped."
            )
        return None

    def _write_layout(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        writer = self._tensorboard(trainer)
        if writer is None or id(writer) in self._layout_written:
            return
        self._layout_written.add(id(writer))
        calibrated = self.calibration is not None
        writer.add_custom_scalars(dashboard.layout(self.methods, behaviour=self.behaviour, calibrated=calibrated))

    def _write_media(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, probe: ProbeSet, maps: dict[str, Any]
    ) -> None:
        writer = self._tensorboard(trainer)
        if writer is None:
            return
        names = list(getattr(pl_module, "class_names", None) or [])

        def name(k: int) -> str:
            return names[k] if 0 <= k < len(names) else str(k)

        for method, (rel, sel, logits) in maps.items():
            probs = logits.softmax(dim=-1)
            for i in range(rel.shape[0]):
                k = probe.positions[i]
                p, pred = probs[i].max(dim=-1)
                title = (
                    f"true: {name(int(probe.labels[i]))} | pred: {name(int(pred))} ({float(p):.2f}) | n={self.n_std:g}"
                )
                frames = render_panels(
                    probe.clips[i], rel[i], sel[i], title=title, labels=("input", method, "selective")
                )
                write_gif(writer, tags.method_tag(method, f"clip_{k}"), frames, _logging_step(trainer), self.fps)
        writer.flush()

    def _write_per_class(self, trainer: pl.Trainer, pl_module: pl.LightningModule, per_clip: dict[str, Tensor]) -> None:
        """The per-class table (most static first) as a TensorBoard text and a CSV row per class in the run's log
        folder, and a bar chart of the per-class spatial bias as a TensorBoard image."""
        writer = self._tensorboard(trainer)
        if writer is None:
            return
        labels = [int(label) for label in per_clip["label"].tolist()]
        names = list(getattr(pl_module, "class_names", None) or [])
        rows = dashboard.per_class_rows(
            labels,
            names,
            {m: per_clip[f"bias/{m}"].tolist() for m in self.methods},
            reliance=per_clip["reliance"].tolist() if "reliance" in per_clip else None,
            correct=per_clip["correct"].tolist() if "correct" in per_clip else None,
        )
        step, epoch = _logging_step(trainer), trainer.current_epoch
        setting = f"n_std={self.n_std:g}, threshold={self.threshold}"
        heading = (
            f"**Spatial bias per class** by method, epoch {epoch}, step {step} ({setting}; most static first; "
            "reliance: probability lost when the clip is frozen; acc: on the probe clips). Means over each "
            "class's probe clips; - where no clip of the class has a value."
        )
        headers = {"class_index": "#", **{f"spatial_bias_{m}": m for m in self.methods}}
        writer.add_text("selrel/per_class", dashboard.markdown_table(rows, heading, headers), step)
        png, height, width = dashboard.bar_chart_png(
            rows, self.methods, f"spatial bias per class, epoch {epoch} ({setting})"
        )
        writer._get_file_writer().add_summary(
            dashboard.image_summary("selrel/per_class/spatial_bias", png, height, width), step
        )
        # The logger's folder (Trainer.log_dir broadcasts from rank 0, and this runs on rank 0 alone).
        log_dir = next((lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if log_dir:
            dashboard.append_csv(Path(log_dir) / "selrel_per_class.csv", rows, epoch=epoch, step=step)
        writer.flush()

    def _write_hparams(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The run's entry in the HParams tab: what the comparison turns on, with the final val/acc and spatial
        bias per method as its metric columns. Written before Lightning's own (TensorBoard keeps the first)."""
        writer = self._tensorboard(trainer)
        if writer is None or not trainer.is_global_zero:
            return
        model = dict(getattr(pl_module, "hparams", {}) or {})
        data = dict(getattr(trainer.datamodule, "hparams", {}) or {}) if trainer.datamodule is not None else {}
        optimizers = getattr(trainer, "optimizers", None) or []
        params: dict[str, Any] = {
            "selrel/methods": ",".join(self.methods),
            "selrel/n_std": self.n_std,
            "selrel/threshold": self.threshold,
            "selrel/probe_clips": self.num_clips if self.per_class is None else f"{self.per_class} per class",
            "selrel/target": self.target,
            "model": type(pl_module).__name__,
            "model/width": model.get("width"),
            "model/arch": model.get("arch"),
            "data": type(trainer.datamodule).__name__ if trainer.datamodule is not None else None,
            "data/cue": data.get("cue"),
            "data/camera_speed": data.get("camera_speed"),
            "optimizer": type(optimizers[0]).__name__ if optimizers else None,
            "lr": optimizers[0].param_groups[0]["lr"] if optimizers else None,
        }
        metrics = ["val/acc", *(tags.method_tag(m, "spatial_bias") for m in self.methods)]
        if self.calibration is not None:
            metrics += [tags.method_tag(m, tags.CALIBRATED) for m in self.methods]
            params["selrel/calibration"] = self.calibration_path
        for summary in dashboard.hparams_summaries(params, metrics):
            writer._get_file_writer().add_summary(summary)
        writer.flush()


def _mean_or_zero(result: dict[str, Tensor]) -> float:
    """The mean of a :class:`MeanStd` result, 0.0 when no rank had a sample."""
    return float(result["mean"]) if not torch.isnan(result["mean"]) else 0.0


def _share(skipped: Tensor, count: Tensor) -> float:
    """The fraction of clips a metric skipped (0.0 when there were none at all)."""
    return float(skipped) / max(float(skipped + count), 1.0)


def _logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives the scalars logged in this hook, so GIFs line up with them."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))
