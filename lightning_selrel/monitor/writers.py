"""Where the monitor's media go (rank 0): heatmap GIFs, the per-class table, chart and CSV, the custom-scalars layout
and the HParams entry. The callback (:mod:`.callback`) decides what to measure and when; this room decides how it is
shown, per logger of the run (:class:`MonitorMedia`):

- a TensorBoardLogger gets all of it in its event file (:class:`TensorBoardMedia`);
- a WandbLogger gets the GIFs as W&B videos, the per-class table as a W&B table and its chart as an image, each
  under the monitor's tag, and the HParams entry in the run's config (:class:`WandbMedia`); W&B's run summary
  keeps the last value of every scalar, so runs compare in its table;
- an MLFlowLogger gets the GIFs, the per-class chart, table (Markdown and JSON) and CSV as artifacts of its run
  under ``selrel/`` and the HParams entry as params (:class:`MLflowMedia`);
- any other logger with a folder (CSVLogger, ...) gets the GIFs, the per-class chart and table as files under
  ``<its folder>/selrel/`` and the per-class CSV beside them (:class:`FileMedia`), and the HParams entry through
  its public ``log_hyperparams``.

Each says once, in one line, where its media go.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from lightning_selrel._lightning import (
    DummyLogger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
    pl,
    rank_zero_info,
    rank_zero_warn,
)
from lightning_selrel.metrics import tags
from lightning_selrel.monitor import dashboard
from lightning_selrel.monitor.probe_set import ProbeSet
from lightning_selrel.monitor.render import encode_gif, gif_summary, render_panels

__all__ = [
    "FileMedia",
    "MLflowMedia",
    "MonitorMedia",
    "TensorBoardMedia",
    "WandbMedia",
    "logging_step",
    "per_class_csv",
]

#: Loggers with media of their own; FileMedia serves the others.
_NATIVE = (TensorBoardLogger, WandbLogger, MLFlowLogger)


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
    pl_module: pl.LightningModule,
    probe: ProbeSet,
    maps: dict[str, Any],
    *,
    n_std: float,
    fps: float,
    name: str | None = None,
) -> list[tuple[str, bytes, int, int]]:
    """Per method and rendered probe clip, ``(tag, GIF bytes, height, width)``: input | baseline | selective (the
    tags of the monitor called ``name``)."""
    names = list(getattr(pl_module, "class_names", None) or [])

    def class_name(k: int) -> str:
        return names[k] if 0 <= k < len(names) else str(k)

    out = []
    for method, (rel, sel, logits) in maps.items():
        probs = logits.softmax(dim=-1)
        for i in range(rel.shape[0]):
            k = probe.positions[i]
            p, pred = probs[i].max(dim=-1)
            truth, predicted = class_name(int(probe.labels[i])), class_name(int(pred))
            title = f"true: {truth} | pred: {predicted} ({float(p):.2f}) | n={n_std:g}"
            frames = render_panels(probe.clips[i], rel[i], sel[i], title=title, labels=("input", method, "selective"))
            out.append(
                (
                    tags.named(tags.method_tag(method, f"clip_{k}"), name),
                    encode_gif(frames, fps),
                    frames.shape[1],
                    frames.shape[2],
                )
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


#: Per SummaryWriter, the custom-scalars layout of every monitor that wrote one: TensorBoard shows a run's last
#: layout, so each monitor writes the union (two named monitors of one run both get their charts).
_LAYOUTS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


class TensorBoardMedia:
    """The monitor's media on the run's first TensorBoardLogger; without one, nothing (and one warning). ``name``:
    the monitor's (:func:`lightning_selrel.metrics.tags.named`)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
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
        """The custom-scalars layout, once per SummaryWriter and monitor, with the other monitors' charts."""
        writer = self.experiment(trainer)
        if writer is None or id(writer) in self._layout_written:
            return
        self._layout_written.add(id(writer))
        merged = _LAYOUTS.setdefault(writer, {})
        merged.update(layout)
        writer.add_custom_scalars(dict(merged))

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
        for tag, gif, height, width in clip_gifs(pl_module, probe, maps, n_std=n_std, fps=fps, name=self.name):
            writer._get_file_writer().add_summary(gif_summary(tag, gif, height, width), logging_step(trainer))
        writer.flush()

    def write_per_class(self, trainer: pl.Trainer, table: PerClass) -> None:
        """The per-class table (most static first) as a TensorBoard text and a CSV row per class in the run's log
        folder, and a bar chart of the per-class spatial bias as a TensorBoard image."""
        writer = self.experiment(trainer)
        if writer is None:
            return
        writer.add_text(tags.named(f"{tags.PREFIX}/per_class", self.name), table.markdown, table.step)
        tag = tags.named(f"{tags.PREFIX}/per_class/spatial_bias", self.name)
        summary = dashboard.image_summary(tag, table.png, table.height, table.width)
        writer._get_file_writer().add_summary(summary, table.step)
        # The logger's folder (Trainer.log_dir broadcasts from rank 0, and this runs on rank 0 alone).
        log_dir = next((lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if log_dir:
            dashboard.append_csv(
                Path(log_dir) / per_class_csv(self.name), table.rows, epoch=table.epoch, step=table.step
            )
        writer.flush()

    def write_hparams(self, trainer: pl.Trainer, params: dict[str, Any], metrics: list[str]) -> None:
        """One HParams entry: ``params`` and, as metric columns, ``metrics``."""
        writer = self.experiment(trainer)
        if writer is None:
            return
        for summary in dashboard.hparams_summaries(params, metrics):
            writer._get_file_writer().add_summary(summary)
        writer.flush()


class _LoggerMedia:
    """The media of every logger of one kind: which loggers (and where each one's media go), a line once per place
    saying so, the GIFs encoded once for all of them, the HParams entry through each logger's ``log_hyperparams``.
    A subclass says which loggers (:meth:`targets`), what its line says (:meth:`where`), and how a GIF
    (:meth:`write_gif`) and a per-class view (:meth:`write_per_class`) are kept."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._noted: set[str] = set()

    def targets(self, trainer: pl.Trainer) -> list[tuple[Any, Any]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def where(self, logger: Any, place: Any) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def write_gif(self, logger: Any, place: Any, tag: str, gif: bytes, step: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_per_class(self, trainer: pl.Trainer, table: PerClass) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def loggers(self, trainer: pl.Trainer) -> list[tuple[Any, Any]]:
        """(logger, place) for every logger this room serves, each place said once."""
        found = self.targets(trainer)
        for logger, place in found:
            if str(place) not in self._noted:
                self._noted.add(str(place))
                rank_zero_info(f"SelectiveRelevanceMonitor: {self.where(logger, place)}")
        return found

    def write_clips(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, probe: ProbeSet, maps: dict[str, Any], **options: Any
    ) -> None:
        targets = self.loggers(trainer)
        if not targets:
            return
        gifs = clip_gifs(pl_module, probe, maps, name=self.name, **options)
        step = logging_step(trainer)
        for logger, place in targets:
            for tag, gif, _, _ in gifs:
                self.write_gif(logger, place, tag, gif, step)

    def write_hparams(self, trainer: pl.Trainer, params: dict[str, Any]) -> None:
        for logger, _ in self.loggers(trainer):
            logger.log_hyperparams({k: v for k, v in params.items() if v is not None})

    def _tag(self, tag: str) -> str:
        return tags.named(tag, self.name)


class FileMedia(_LoggerMedia):
    """The monitor's media as files, for every logger of the run without media of its own (CSVLogger, ...): under
    ``<the logger's folder>/selrel/`` the GIFs (``<method>/clip_<k>/step_<step>.gif``), the per-class chart and
    table (``per_class/step_<step>.png`` / ``.md``), and ``selrel_per_class.csv`` in the logger's folder; the HParams
    entry through the logger's ``log_hyperparams``. Files are written whole (a temporary file renamed over the
    name). A monitor called ``name`` writes under ``selrel/<name>/`` and to ``selrel_<name>_per_class.csv``."""

    def targets(self, trainer: pl.Trainer) -> list[tuple[Any, Path]]:
        """(logger, its folder) for every logger without media of its own, each folder once."""
        seen: dict[Path, Any] = {}
        for logger in real_loggers(trainer):
            if isinstance(logger, _NATIVE):
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

    def where(self, logger: Any, place: Path) -> str:
        return (
            f"heatmap GIFs, per-class tables and charts for {type(logger).__name__} go to "
            f"{place / self._tag(tags.PREFIX + '/')} and the per-class CSV to {place / per_class_csv(self.name)}"
        )

    def write_gif(self, logger: Any, place: Path, tag: str, gif: bytes, step: int) -> None:
        _write(place / tag / f"step_{step:06d}.gif", gif)

    def write_per_class(self, trainer: pl.Trainer, table: PerClass) -> None:
        for _, folder in self.loggers(trainer):
            where = folder / self._tag(f"{tags.PREFIX}/per_class")
            _write(where / f"step_{table.step:06d}.png", table.png)
            _write(where / f"step_{table.step:06d}.md", table.markdown.encode())
            dashboard.append_csv(folder / per_class_csv(self.name), table.rows, epoch=table.epoch, step=table.step)


class WandbMedia(_LoggerMedia):
    """The monitor's media on every WandbLogger of the run, through its public ``log_video``, ``log_table`` and
    ``log_image``: per method and probe clip a video ``selrel/<m>/clip_<k>`` (the GIF), the per-class table
    ``selrel/per_class`` and its chart ``selrel/per_class/spatial_bias``, at the step of the scalars; the HParams
    entry goes to the run's config."""

    def targets(self, trainer: pl.Trainer) -> list[tuple[Any, Any]]:
        return [(logger, "wandb") for logger in real_loggers(trainer) if isinstance(logger, WandbLogger)]

    def where(self, logger: Any, place: Any) -> str:
        return f"heatmap videos, the per-class table and chart go to the W&B run under {self._tag(tags.PREFIX + '/')}"

    def write_gif(self, logger: WandbLogger, place: Any, tag: str, gif: bytes, step: int) -> None:
        logger.log_video(tag, [io.BytesIO(gif)], step=step, format=["gif"])

    def write_per_class(self, trainer: pl.Trainer, table: PerClass) -> None:
        from PIL import Image

        columns = list(table.rows[0]) if table.rows else []
        data = [[row[c] for c in columns] for row in table.rows]
        for logger, _ in self.loggers(trainer):
            logger.log_table(self._tag(f"{tags.PREFIX}/per_class"), columns, data, step=table.step)
            chart = Image.open(io.BytesIO(table.png))
            logger.log_image(self._tag(f"{tags.PREFIX}/per_class/spatial_bias"), [chart], step=table.step)


class MLflowMedia(_LoggerMedia):
    """The monitor's media on every MLFlowLogger of the run, as artifacts of its run (through the run's public
    ``MlflowClient``): ``selrel/<m>/clip_<k>/step_<step>.gif``, ``selrel/per_class/step_<step>.png`` / ``.md`` /
    ``.json`` and ``selrel_per_class.csv`` (every measurement so far); the HParams entry as params."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self._rows: dict[str, list[dict[str, Any]]] = {}  # run id -> every per-class row logged, for the CSV

    def targets(self, trainer: pl.Trainer) -> list[tuple[Any, Any]]:
        return [(logger, logger.run_id) for logger in real_loggers(trainer) if isinstance(logger, MLFlowLogger)]

    def where(self, logger: Any, place: Any) -> str:
        return (
            f"heatmap GIFs, per-class tables and charts go to the MLflow run's artifacts under "
            f"{self._tag(tags.PREFIX + '/')} and the per-class CSV to {per_class_csv(self.name)}"
        )

    @staticmethod
    def _upload(logger: MLFlowLogger, artifact: str, data: bytes) -> None:
        """``data`` as the run's artifact ``artifact`` (a path with folders), through a temporary file."""
        folder, _, file_name = artifact.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="selrel-") as temporary:
            path = Path(temporary) / file_name
            path.write_bytes(data)
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=folder or None)

    def write_gif(self, logger: MLFlowLogger, place: Any, tag: str, gif: bytes, step: int) -> None:
        self._upload(logger, f"{tag}/step_{step:06d}.gif", gif)

    def write_per_class(self, trainer: pl.Trainer, table: PerClass) -> None:
        where = self._tag(f"{tags.PREFIX}/per_class")
        for logger, run in self.loggers(trainer):
            self._upload(logger, f"{where}/step_{table.step:06d}.png", table.png)
            logger.experiment.log_text(run, table.markdown, f"{where}/step_{table.step:06d}.md")
            logger.experiment.log_dict(run, {"rows": table.rows}, f"{where}/step_{table.step:06d}.json")
            rows = self._rows.setdefault(run, [])
            rows += [{"epoch": table.epoch, "step": table.step, **row} for row in table.rows]
            self._upload(logger, per_class_csv(self.name), _csv(rows))


def _csv(rows: list[dict[str, Any]]) -> bytes:
    """``rows`` as CSV bytes, the columns of every row in the order first seen."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def per_class_csv(name: str | None) -> str:
    """The per-class CSV's file name in the logger's folder: ``selrel_per_class.csv``, or
    ``selrel_<name>_per_class.csv`` for a monitor called ``name``."""
    return f"{tags.PREFIX}_{name}_per_class.csv" if name else f"{tags.PREFIX}_per_class.csv"


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
    """Every logger of the run gets the media it can show: TensorBoard's event file, files for the others (of the
    monitor called ``name``)."""

    def __init__(self, name: str | None = None) -> None:
        self.tensorboard, self.files = TensorBoardMedia(name), FileMedia(name)
        self.others = (WandbMedia(name), MLflowMedia(name), self.files)  # each serves its kind of logger

    def write_layout(self, trainer: pl.Trainer, layout: Any) -> None:
        self.tensorboard.write_layout(trainer, layout)

    def write_clips(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, probe: ProbeSet, maps: dict[str, Any], **options: Any
    ) -> None:
        """The GIFs of :func:`clip_gifs` (``n_std=``, ``fps=``) for every logger."""
        self.tensorboard.write_clips(trainer, pl_module, probe, maps, **options)
        for media in self.others:
            media.write_clips(trainer, pl_module, probe, maps, **options)

    def write_per_class(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **options: Any) -> None:
        """The per-class view of :func:`per_class` (per-clip columns, methods; ``n_std=``, ``threshold=``)."""
        if not real_loggers(trainer):
            return
        table = per_class(trainer, pl_module, *args, **options)
        self.tensorboard.write_per_class(trainer, table)
        for media in self.others:
            media.write_per_class(trainer, table)

    def write_hparams(self, trainer: pl.Trainer, params: dict[str, Any], metrics: list[str]) -> None:
        self.tensorboard.write_hparams(trainer, params, metrics)
        for media in self.others:
            media.write_hparams(trainer, params)


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives the scalars logged in this hook, so GIFs line up with them."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))
