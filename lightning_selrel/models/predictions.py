"""``predict`` that keeps its predictions: a :class:`~pytorch_lightning.callbacks.BasePredictionWriter` writing one
row per clip (CSV or JSON).

``python -m lightning_selrel predict`` adds it unless the configuration has a prediction writer of its own; in
Python, ``Trainer(callbacks=[ClipPredictionWriter("predictions.csv")])``. It reads what
:meth:`~lightning_selrel.models.classifier.VideoClassifier.predict_step` returns (``predicted``, ``confidence``,
``probs``), or any LightningModule's logits / probabilities (B, num_classes); rows hold the clip's index in the
prediction dataset, its label where the batches carry one, the predicted class (index and name), its probability
and the ``top_k`` classes. The file is written once at the end, atomically (a temporary file renamed over it), so
an interrupted run leaves no half-written file and an existing one is only replaced by a complete one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from lightning_selrel._lightning import BasePredictionWriter, pl, rank_zero_info
from lightning_selrel.files import unwritable

__all__ = ["ClipPredictionWriter"]

_FORMATS = (".csv", ".json")


class ClipPredictionWriter(BasePredictionWriter):
    """Write every predicted clip as a row of ``output``.

    Args:
        output: A ``.csv`` or ``.json`` file (default: ``predictions.csv`` in the run's log folder). With several
            ranks each writes its own, ``NAME.rank<r>.csv``.
        top_k: Classes per row, most probable first (``top_k`` columns of index and probability).
    """

    def __init__(self, output: str | None = None, top_k: int = 1) -> None:
        super().__init__(write_interval="batch")
        if output is not None and Path(output).suffix.lower() not in _FORMATS:
            raise ValueError(f"ClipPredictionWriter output {output}: use a .csv or .json file name")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        self.output, self.top_k = output, top_k
        self.rows: list[dict[str, Any]] = []
        self.path: Path | None = None

    def _target(self, trainer: pl.Trainer) -> Path:
        folder = trainer.log_dir or trainer.default_root_dir
        path = Path(self.output) if self.output is not None else Path(folder) / "predictions.csv"
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path.expanduser()

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = []
        self.path = self._target(trainer)
        folder = self.path.resolve().parent  # the run's log folder may not exist yet: made here, as loggers do
        if not folder.exists() and self.output is None:
            folder.mkdir(parents=True, exist_ok=True)
        reason = unwritable(folder) if folder.is_dir() else "no such folder"
        if reason is not None:
            raise ValueError(f"ClipPredictionWriter: {self.path} cannot be written in {folder} ({reason})")

    @override
    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        probs = _probabilities(prediction)
        labels = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
        labels = labels if isinstance(labels, Tensor) and labels.ndim == 1 and len(labels) == len(probs) else None
        names = list(getattr(pl_module, "class_names", None) or [])
        k = min(self.top_k, probs.shape[1])
        top_p, top_i = probs.float().topk(k, dim=1)
        for row in range(probs.shape[0]):
            index = int(batch_indices[row]) if batch_indices is not None and row < len(batch_indices) else None
            predicted = int(top_i[row, 0])
            record: dict[str, Any] = {
                "dataloader": dataloader_idx,
                "index": index,
                "label": int(labels[row]) if labels is not None else None,
                "predicted": predicted,
                "name": names[predicted] if predicted < len(names) else str(predicted),
                "probability": round(float(top_p[row, 0]), 6),
            }
            for j in range(1, k):
                record[f"top{j + 1}"] = int(top_i[row, j])
                record[f"top{j + 1}_probability"] = round(float(top_p[row, j]), 6)
            self.rows.append(record)

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.path is None:
            return
        if self.path.suffix.lower() == ".json":
            text = json.dumps(self.rows, indent=1) + "\n"
        else:
            buffer = io.StringIO()
            fields = list(self.rows[0]) if self.rows else ["dataloader", "index", "label", "predicted", "name"]
            writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in self.rows)
            text = buffer.getvalue()
        temporary = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            temporary.write_text(text)
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)
        rank_zero_info(f"predict: wrote {len(self.rows)} predictions to {self.path}")


def _probabilities(prediction: Any) -> Tensor:
    """(B, num_classes) probabilities from the classifier's dict, or from logits / probabilities of any module."""
    if isinstance(prediction, dict):
        if "probs" in prediction:
            return prediction["probs"].detach().cpu()
        if "logits" in prediction:
            return prediction["logits"].detach().float().softmax(dim=1).cpu()
    if isinstance(prediction, Tensor) and prediction.ndim == 2:
        values = prediction.detach().float().cpu()
        sums = values.sum(dim=1)
        is_probability = bool((values >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-4))
        return values if is_probability else values.softmax(dim=1)
    raise ValueError(
        "ClipPredictionWriter: predict_step must return the classifier's dict (probs), a dict with 'logits', or a "
        f"(B, num_classes) tensor; got {type(prediction).__name__}"
        + (f" of shape {tuple(prediction.shape)}" if isinstance(prediction, Tensor) else "")
    )
