"""Where the monitor's media go (rank 0): heatmap GIFs, the per-class table, chart and CSV, the custom-scalars layout
and the HParams entry. The callback (:mod:`.callback`) decides what to measure and when; this room decides how it is
shown, per logger of the run (:class:`MonitorMedia`):

- a TensorBoardLogger gets all of it in its event file (:class:`TensorBoardMedia`);
- any other logger with a folder (CSVLogger, Weights & Biases, MLflow, ...) gets the GIFs, the per-class chart
  and table as files under ``<its folder>/selrel/`` and the per-class CSV beside them (:class:`FileMedia`; one line
  says where), and the HParams entry through its public ``log_hyperparams``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.loggers.logger import DummyLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lightning_selrel.metrics import tags
from lightning_selrel.monitor import dashboard
from lightning_selrel.monitor.probe_set import ProbeSet
from lightning_selrel.monitor.render import encode_gif, gif_summary, render_panels

__all__ = ["FileMedia", "MonitorMedia", "TensorBoardMedia", "logging_step"]


@dataclass
class PerClass:
    """The per-class view of one measurement: the rows (most static class first), their Markdown table and the
    bar chart (PNG bytes and size), at ``step`` / ``epoch``."""

    rows: list[dict[str, Any]]
    markdown: str
    png: bytes
    height: int
    width: int
    step: int
    epoch: int


def clip_gifs(
    pl_module: pl.LightningModule, probe: ProbeSet, maps: dict[str, Any], *, n_std: float, fps: float
) -> list[tuple[str, bytes, int, int]]:
    """Per method and rendered probe clip, ``(tag, GIF bytes, height, width)``: input | baseline | selective."""
    names = list(getattr(pl_module, "class_names", None) or [])

    def name(k: int) -> str:
        return names[k] if 0 <= k < len(names) else str(k)

    out = []
    for method, (rel, sel, logits) in maps.items():
        probs = logits.softmax(dim=-1)
        for i in range(rel.shape[0]):
            k = probe.positions[i]
            p, pred = probs[i].max(dim=-1)
            title = f"true: {name(int(probe.labels[i]))} | pred: {name(int(pred))} ({float(p):.2f}) | n={n_std:g}"
            frames = render_panels(probe.clips[i], rel[i], sel[i], title=title, labels=("input", method, "selective"))
            out.append(
                (tags.method_tag(method, f"clip_{k}"), encode_gif(frames, fps), frames.shape[1], frames.shape[2])
            )
    return out


def per_class(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    per_clip: dict[str, Tensor],
    methods: list[str],
    *,
    n_std: float,
    threshold: str,
) -> PerClass:
    """The per-class rows, table and chart of one measurement (:mod:`.dashboard`)."""
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
    markdown = dashboard.markdown_table(rows, heading, headers)
    png, height, width = dashboard.bar_chart_png(rows, methods, f"spatial bias per class, epoch {epoch} ({setting})")
    return PerClass(rows, markdown, png, height, width, step, epoch)


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
        if not self._warned and not real_loggers(trainer):  # other loggers get files (FileMedia)
            self._warned = True
            rank_zero_warn(
                "SelectiveRelevanceMonitor: no logger (none configured, or fast_dev_run): the scores reach the "
                "progress bar and callback_metrics; heatmap videos, per-class tables and the layout are skipped."
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
        for tag, gif, height, width in clip_gifs(pl_module, probe, maps, n_std=n_std, fps=fps):
            writer._get_file_writer().add_summary(gif_summary(tag, gif, height, width), logging_step(trainer))
        writer.flush()

    def write_per_class(self, trainer: pl.Trainer, table: PerClass) -> None:
        """The per-class table (most static first) as a TensorBoard text and a CSV row per class in the run's log
        folder, and a bar chart of the per-class spatial bias as a TensorBoard image."""
        writer = self.experiment(trainer)
        if writer is None:
            return
        writer.add_text("selrel/per_class", table.markdown, table.step)
        summary = dashboard.image_summary("selrel/per_class/spatial_bias", table.png, table.height, table.width)
        writer._get_file_writer().add_summary(summary, table.step)
        # The logger's folder (Trainer.log_dir broadcasts from rank 0, and this runs on rank 0 alone).
        log_dir = next((lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if log_dir:
            dashboard.append_csv(Path(log_dir) / "selrel_per_class.csv", table.rows, epoch=table.epoch, step=table.step)
        writer.flush()

    def write_hparams(self, trainer: pl.Trainer, params: dict[str, Any], metrics: list[str]) -> None:
        """One HParams entry: ``params`` and, as metric columns, ``metrics``."""
        writer = self.experiment(trainer)
        if writer is None:
            return
        for summary in dashboard.hparams_summaries(params, metrics):
            writer._get_file_writer().add_summary(summary)
        writer.flush()


class FileMedia:
    """The monitor's media as files, for every logger of the run that is not a TensorBoardLogger: under
    ``<the logger's folder>/selrel/`` the GIFs (``<method>/clip_<k>/step_<step>.gif``), the per-class chart and
    table (``per_class/step_<step>.png`` / ``.md``), and ``selrel_per_class.csv`` in the logger's folder; the HParams
    entry through the logger's ``log_hyperparams``. Files are written whole (a temporary file renamed over the
    name)."""

    def __init__(self) -> None:
        self._noted: set[str] = set()

    @staticmethod
    def folders(trainer: pl.Trainer) -> list[tuple[Any, Path]]:
        """(logger, its folder) for every logger that is not TensorBoard's, each folder once."""
        seen: dict[Path, Any] = {}
        for logger in real_loggers(trainer):
            if isinstance(logger, TensorBoardLogger):
                continue
            folder = None
            for attribute in ("log_dir", "save_dir"):
                try:
                    folder = getattr(logger, attribute, None)
                except Exception:  # a logger whose folder needs a started experiment
                    folder = None
                if folder:
                    break
            path = Path(str(folder or trainer.default_root_dir)).expanduser()
            seen.setdefault(path, logger)
        return [(logger, path) for path, logger in seen.items()]

    def _note(self, logger: Any, folder: Path) -> None:
        key = str(folder)
        if key not in self._noted:
            self._noted.add(key)
            rank_zero_info(
                f"SelectiveRelevanceMonitor: heatmap GIFs, per-class tables and charts for {type(logger).__name__} "
                f"go to {folder / 'selrel'}/ and the per-class CSV to {folder / 'selrel_per_class.csv'}"
            )

    def write_clips(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, probe: ProbeSet, maps: dict[str, Any], **options: Any
    ) -> None:
        targets = self.folders(trainer)
        if not targets:
            return
        gifs = clip_gifs(pl_module, probe, maps, **options)
        step = logging_step(trainer)
        for logger, folder in targets:
            self._note(logger, folder)
            for tag, gif, _, _ in gifs:
                _write(folder / tag / f"step_{step:06d}.gif", gif)

    def write_per_class(self, trainer: pl.Trainer, table: PerClass) -> None:
        for logger, folder in self.folders(trainer):
            self._note(logger, folder)
            _write(folder / "selrel" / "per_class" / f"step_{table.step:06d}.png", table.png)
            _write(folder / "selrel" / "per_class" / f"step_{table.step:06d}.md", table.markdown.encode())
            dashboard.append_csv(folder / "selrel_per_class.csv", table.rows, epoch=table.epoch, step=table.step)

    def write_hparams(self, trainer: pl.Trainer, params: dict[str, Any]) -> None:
        for logger, _ in self.folders(trainer):
            logger.log_hyperparams({k: v for k, v in params.items() if v is not None})


def real_loggers(trainer: pl.Trainer) -> list[Any]:
    """The run's loggers, without the DummyLogger that ``fast_dev_run`` puts in their place."""
    return [logger for logger in trainer.loggers if not isinstance(logger, DummyLogger)]


def _write(path: Path, data: bytes) -> None:
    """``data`` into ``path``, whole: a temporary file in the same folder renamed over the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class MonitorMedia:
    """Every logger of the run gets the media it can show: TensorBoard's event file, files for the others."""

    def __init__(self) -> None:
        self.tensorboard, self.files = TensorBoardMedia(), FileMedia()

    def write_layout(self, trainer: pl.Trainer, layout: Any) -> None:
        self.tensorboard.write_layout(trainer, layout)

    def write_clips(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, probe: ProbeSet, maps: dict[str, Any], **options: Any
    ) -> None:
        """The GIFs of :func:`clip_gifs` (``n_std=``, ``fps=``) for every logger."""
        self.tensorboard.write_clips(trainer, pl_module, probe, maps, **options)
        self.files.write_clips(trainer, pl_module, probe, maps, **options)

    def write_per_class(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **options: Any) -> None:
        """The per-class view of :func:`per_class` (per-clip columns, methods; ``n_std=``, ``threshold=``)."""
        if not real_loggers(trainer):
            return
        table = per_class(trainer, pl_module, *args, **options)
        self.tensorboard.write_per_class(trainer, table)
        self.files.write_per_class(trainer, table)

    def write_hparams(self, trainer: pl.Trainer, params: dict[str, Any], metrics: list[str]) -> None:
        self.tensorboard.write_hparams(trainer, params, metrics)
        self.files.write_hparams(trainer, params)


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives the scalars logged in this hook, so GIFs line up with them."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))
