"""The LightningModule that trains a video classifier (C3D, R3D-18, R(2+1)D-18, or yours): clips in pixel scale in,
cross-entropy out."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import IO, Any

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import Self, override

from lightning_selrel._lightning import (
    LRSchedulerCallable,
    MisconfigurationException,
    OptimizerCallable,
    pl,
    rank_zero_warn,
)
from lightning_selrel.files import load_file
from lightning_selrel.models.architectures import build_network, check_architecture, check_model_class
from lightning_selrel.models.c3d import C3D, Normalize
from lightning_selrel.models.weights import load_c3d_weights, load_matching_weights

__all__ = ["C3DClassifier", "VideoClassifier"]

# Kinetics-style statistics in pixel scale: 0.45 +- 0.225 of 255.
DEFAULT_MEAN = (114.75, 114.75, 114.75)
DEFAULT_STD = (57.375, 57.375, 57.375)


class VideoClassifier(pl.LightningModule):
    """A video classifier for action recognition, trained with cross-entropy: C3D by default, or any network of
    :mod:`lightning_selrel.models.architectures` (``arch="r2plus1d_18"``, ``"r3d_18"``, or a class path).

    ``forward`` takes clips as the data yields them: uint8 or float in pixel scale [0, 255], shape
    (B, 3, T, H, W); it normalises with the ``mean``/``std`` buffers of :attr:`normalize`, which
    are saved in checkpoints. The constructor arguments that shape the network (all but the
    optimiser and scheduler factories and ``pretrained``) are saved as hyperparameters, so
    ``VideoClassifier.load_from_checkpoint(path)`` rebuilds the same network from the file alone. Its earlier name,
    ``C3DClassifier``, is the same class (older configs, checkpoints and code keep working).

    Args:
        num_classes: Number of classes.
        width: Channels of the first convolutions (64 is the standard C3D, R3D-18 and R(2+1)D-18).
        fc_dim: Width of C3D's fc6 and fc7 (4096 is the standard); other architectures ignore it.
        clip_shape: Clip (T, H, W) the network is built for.
        dropout: Dropout after fc6 and fc7.
        mean: Per-channel mean in pixel scale (RGB) subtracted from the input.
        std: Per-channel standard deviation in pixel scale the input is divided by.
        class_names: Optional names of the classes, saved with the checkpoint for display.
        optimizer: Builds the optimiser from the parameters. Default: SGD, lr 1e-3, momentum 0.9
            (the paper's set-up).
        scheduler: Builds the learning-rate scheduler from the optimiser. Default:
            ReduceLROnPlateau, x0.1 after 10 epochs without improvement of ``val/loss``.
        pretrained: Path to public weights loaded into the network: for C3D a Sports-1M port, ``features.N`` port
            or MMAction2 file (see :mod:`lightning_selrel.models.weights`); for the other architectures a state
            dict whose names match the network's (torchvision's, for R3D-18 and R(2+1)D-18). The head is re-initialised
            when the class count differs. Not saved as a hyperparameter: a checkpoint of this model holds the
            weights itself, so ``load_from_checkpoint`` never needs the file.
        arch: The network: ``"c3d"``, ``"r3d_18"``, ``"r2plus1d_18"`` or a class path (see
            :mod:`lightning_selrel.models.architectures`). Checkpoints written before this argument existed are C3D.
    """

    def __init__(
        self,
        num_classes: int = 101,
        width: int = 64,
        fc_dim: int = 4096,
        clip_shape: Sequence[int] = (16, 112, 112),
        dropout: float = 0.5,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        class_names: Sequence[str] | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        pretrained: str | None = None,
        arch: str = "c3d",
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes must be an integer >= 2 (a classifier tells classes apart), got {num_classes!r}"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} entries but num_classes is {num_classes}")
        # Plain lists in the hyperparameters: they round-trip through YAML and compare equal to the
        # data module's (which come from the CLI as lists).
        clip_shape, mean, std = [int(s) for s in clip_shape], [float(m) for m in mean], [float(s) for s in std]
        class_names = list(class_names) if class_names is not None else None
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "pretrained"])
        self.normalize = Normalize(mean, std)
        self.net = build_network(
            arch, num_classes=num_classes, width=width, fc_dim=fc_dim, clip_shape=clip_shape, dropout=dropout
        )
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc_top5 = MulticlassAccuracy(num_classes=num_classes, top_k=min(5, num_classes), average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        if pretrained is not None:
            if isinstance(self.net, C3D):
                load_c3d_weights(self.net, pretrained)
            else:
                load_matching_weights(self.net, pretrained)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | os.PathLike | IO[bytes],
        map_location: Any = None,
        hparams_file: str | os.PathLike | None = None,
        strict: bool | None = None,
        *,
        trust_arch: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Lightning's ``load_from_checkpoint``, refusing before any import a checkpoint whose ``arch`` is a class path
        that neither ``trust_arch``, :func:`~lightning_selrel.models.architectures.trust_architecture` nor an
        ``arch=`` passed here (the caller's own code) trusts, and one whose recorded ``_class_path`` (LightningCLI's)
        is not this class.

        Raises:
            CheckpointError: Naming the file, the class path and the fix.
        """
        own = f"{cls.__module__}.{cls.__qualname__}"  # a _class_path Lightning's instantiator imports: this class
        if isinstance(checkpoint_path, (str, os.PathLike)):
            checkpoint, name = load_file(checkpoint_path, mmap=True), checkpoint_path
        else:  # a file object: read it, then hand Lightning the same bytes
            data = checkpoint_path.read()
            checkpoint, name = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), "<stream>"
            checkpoint_path = io.BytesIO(data)
        check_model_class(checkpoint, name, own)
        if "arch" not in kwargs:
            check_architecture(checkpoint, name, trust_arch)
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, **kwargs)

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        """The (T, H, W) the network is built for."""
        shape = getattr(self.net, "clip_shape", None)
        return tuple(shape) if shape is not None else tuple(self.hparams["clip_shape"])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return int(self.hparams["num_classes"])

    @override
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for clips (B, 3, T, H, W) in pixel scale, uint8 or float."""
        return self.net(self.normalize(clips))

    # -- preconditions -------------------------------------------------------------------------
    @override
    def setup(self, stage: str) -> None:
        """Before training: the validation set must not be empty when the scheduler steps on ``val/loss``."""
        if stage != "fit" or self._trainer is None:
            return
        size = _validation_size(self.trainer)
        if size != 0:
            return
        # What the scheduler steps on (a throwaway optimiser and scheduler: Lightning builds its own after setup).
        monitored = self.configure_optimizers()["lr_scheduler"].get("monitor")
        where = "data.val_size > 0" if hasattr(self.trainer.datamodule, "val_set") else "validation data"
        if monitored is not None:
            raise MisconfigurationException(
                f"the validation set is empty, and the scheduler steps on {monitored} after every epoch: give it "
                f"{where}, or pass a scheduler that does not monitor {monitored} "
                "(--model.scheduler torch.optim.lr_scheduler.StepLR --model.scheduler.step_size 10)"
            )
        rank_zero_warn("the validation set is empty: training without validation (no val/loss, val/acc)")

    # -- steps ---------------------------------------------------------------------------------
    def _shared_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clips, labels = batch[0], batch[1]
        logits = self(clips)
        return self.loss(logits, labels), logits, labels

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self._shared_step(batch)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, labels = self._shared_step(batch)
        self.val_acc(logits, labels)
        self.val_acc_top5(logits, labels)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
        self.log("val/acc_top5", self.val_acc_top5)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, labels = self._shared_step(batch)
        self.test_acc(logits, labels)
        self.log("test/loss", loss, sync_dist=True)
        self.log("test/acc", self.test_acc)

    @override
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        clips = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = self(clips).softmax(dim=-1)
        confidence, predicted = probs.max(dim=-1)
        return {"predicted": predicted, "confidence": confidence, "probs": probs}

    # -- optimisation --------------------------------------------------------------------------
    @override
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            optimizer = torch.optim.SGD(self.parameters(), lr=1e-3, momentum=0.9)
        else:
            optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=10)
        else:
            scheduler = self.scheduler_factory(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}


#: The classifier's name until release 0.1: the same class, so ``lightning_selrel.C3DClassifier`` in configs,
#: scripts and checkpoints' class paths still builds it.
C3DClassifier = VideoClassifier


def _validation_size(trainer: pl.Trainer) -> int | None:
    """How many clips fit will validate on: 0 when validation is off or its data are empty, None when unknown."""
    if trainer.limit_val_batches == 0:
        return 0
    datamodule = trainer.datamodule
    if datamodule is None:
        return None
    val_set = getattr(datamodule, "val_set", None)
    if val_set is not None:
        return len(val_set)
    return None
