"""Where the monitor's media go: heatmap GIFs, the per-class table, chart and CSV, the custom-scalars layout and the
HParams entry, on the run's TensorBoardLogger (rank 0). The callback (:mod:`.callback`) decides what to measure and
when; this room decides how it is shown. Other loggers plug in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lightning_selrel.metrics import tags
from lightning_selrel.monitor import dashboard
from lightning_selrel.monitor.probe_set import ProbeSet
from lightning_selrel.monitor.render import render_panels, write_gif

__all__ = ["TensorBoardMedia", "logging_step"]


class TensorBoardMedia:
    """The monitor's media on the run's first TensorBoardLogger; without one, nothing (and one warning)."""

    def __init__(self) -> None:
        self._warned = False
        self._layout_written: set[int] = set()

    def experiment(self, trainer: pl.Trainer) -> Any:
        """The SummaryWriter of the run's TensorBoardLogger, or None (warned once)."""
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        if not self._warned:
            self._warned = True
            rank_zero_warn(
                "SelectiveRelevanceMonitor: no TensorBoardLogger (none configured, or fast_dev_run): scalars are "
                "logged, heatmap videos and the custom-scalars layout are skipped."
            )
        return None

    def write_layout(self, trainer: pl.Trainer, layout: Any) -> None:
        """The custom-scalars layout, once per SummaryWriter."""
        writer = self.experiment(trainer)
        if writer is None or id(writer) in self._layout_written:
            return
        self._layout_written.add(id(writer))
        writer.add_custom_scalars(layout)

    def write_clips(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        probe: ProbeSet,
        maps: dict[str, Any],
        *,
        n_std: float,
        fps: float,
    ) -> None:
        """Animated GIFs ``selrel/<method>/clip_<k>``: input | baseline | selective, titled with the classes."""
        writer = self.experiment(trainer)
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
                title = f"true: {name(int(probe.labels[i]))} | pred: {name(int(pred))} ({float(p):.2f}) | n={n_std:g}"
                frames = render_panels(
                    probe.clips[i], rel[i], sel[i], title=title, labels=("input", method, "selective")
                )
                write_gif(writer, tags.method_tag(method, f"clip_{k}"), frames, logging_step(trainer), fps)
        writer.flush()

    def write_per_class(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        per_clip: dict[str, Tensor],
        methods: list[str],
        *,
        n_std: float,
        threshold: str,
    ) -> None:
        """The per-class table (most static first) as a TensorBoard text and a CSV row per class in the run's log
        folder, and a bar chart of the per-class spatial bias as a TensorBoard image."""
        writer = self.experiment(trainer)
        if writer is None:
            return
        labels = [int(label) for label in per_clip["label"].tolist()]
        names = list(getattr(pl_module, "class_names", None) or [])
        rows = dashboard.per_class_rows(
            labels,
            names,
            {m: per_clip[f"bias/{m}"].tolist() for m in methods},
            reliance=per_clip["reliance"].tolist() if "reliance" in per_clip else None,
            correct=per_clip["correct"].tolist() if "correct" in per_clip else None,
        )
        step, epoch = logging_step(trainer), trainer.current_epoch
        setting = f"n_std={n_std:g}, threshold={threshold}"
        heading = (
            f"**Spatial bias per class** by method, epoch {epoch}, step {step} ({setting}; most static first; "
            "reliance: probability lost when the clip is frozen; acc: on the probe clips). Means over each "
            "class's probe clips; - where no clip of the class has a value."
        )
        headers = {"class_index": "#", **{f"spatial_bias_{m}": m for m in methods}}
        writer.add_text("selrel/per_class", dashboard.markdown_table(rows, heading, headers), step)
        png, height, width = dashboard.bar_chart_png(
            rows, methods, f"spatial bias per class, epoch {epoch} ({setting})"
        )
        writer._get_file_writer().add_summary(
            dashboard.image_summary("selrel/per_class/spatial_bias", png, height, width), step
        )
        # The logger's folder (Trainer.log_dir broadcasts from rank 0, and this runs on rank 0 alone).
        log_dir = next((lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if log_dir:
            dashboard.append_csv(Path(log_dir) / "selrel_per_class.csv", rows, epoch=epoch, step=step)
        writer.flush()

    def write_hparams(self, trainer: pl.Trainer, params: dict[str, Any], metrics: list[str]) -> None:
        """One HParams entry: ``params`` and, as metric columns, ``metrics``."""
        writer = self.experiment(trainer)
        if writer is None:
            return
        for summary in dashboard.hparams_summaries(params, metrics):
            writer._get_file_writer().add_summary(summary)
        writer.flush()


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives the scalars logged in this hook, so GIFs line up with them."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))
