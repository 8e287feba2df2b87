"""Training a reference until it has learned its task: keep the best validation state, stop once learned, and
recover from a collapse (:mod:`lightning_selrel.monitor.calibration`).

A small network on a two-class task on real video can collapse: after an epoch above chance, its training
accuracy falls back to chance and every prediction is one class (measured: the speed reference on six public
clips, 0.60 at epoch 2, then 0.50 and loss 0.693 to the end of 8 epochs, in 2 of 2 seeds), or never leave chance
at all (the speed reference on ``../shared/footage/``: 0.48-0.58 on its training clips for 8 epochs at Adam's
1e-3, where after a drop to 1e-4 it reached 0.94). The steward watches each epoch and, on a collapse or when
stuck, restores the best state so far, clears the optimiser's state (its momentum points into the collapse) and
divides its learning rate by ``lr_drop``, at most ``max_recoveries`` times. What it did is kept in
:attr:`ReferenceSteward.report`, which ``calibrate`` writes per reference.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import signal
from typing import Any

import torch
from torch.utils.data import DataLoader

from lightning_selrel._lightning import Callback, pl

__all__ = ["ReferenceData", "ReferenceSteward", "evaluate", "reference_like", "train_reference"]


def evaluate(model: torch.nn.Module, loader: DataLoader, transform=None) -> tuple[float, int]:
    """Accuracy of a model over a loader in eval mode, and how many distinct classes it predicted; ``transform``
    applies to the clips (e.g. freezing)."""
    device = next(model.parameters()).device
    right = total = 0
    predicted: set[int] = set()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                clips, labels = batch[0].to(device), batch[1].to(device)
                if transform is not None:
                    clips = transform(clips)
                guess = model(clips).argmax(dim=1)
                right += int((guess == labels).sum())
                total += int(labels.numel())
                predicted.update(int(g) for g in guess.unique())
    finally:
        model.train(was_training)
    return right / max(total, 1), len(predicted)


class ReferenceSteward(Callback):
    """Validate a reference after every training epoch, keep its best state, stop once it has learned, and
    recover from a collapse.

    Args:
        val_loader: The reference's validation clips.
        classes: Its number of classes (chance is ``1 / classes``).
        train_loader: Some of its training clips, scored in eval mode after every epoch (None: not scored).
        learned_gain: Stop once validation accuracy is this share of the way from chance to perfect (0.8: 0.9
            for two classes).
        collapse_margin: A collapse is an epoch whose accuracy on the training clips of ``train_loader`` or on
            the validation clips is within this of chance with every validation prediction one class, after an
            epoch whose validation accuracy did better than that; a reference is stuck when its training accuracy
            stays within this of chance for ``patience`` epochs in a row. Both are recovered from alike.
        lr_drop: The learning rate is divided by this at each recovery.
        max_recoveries: At most this many recoveries; after them training goes on to the budget.
        patience: Epochs at chance on the training clips before a reference counts as stuck.
    """

    def __init__(
        self,
        val_loader: DataLoader,
        classes: int,
        train_loader: DataLoader | None = None,
        *,
        learned_gain: float = 0.8,
        collapse_margin: float = 0.05,
        lr_drop: float = 10.0,
        max_recoveries: int = 2,
        patience: int = 2,
    ) -> None:
        super().__init__()
        self.val_loader, self.classes, self.train_loader = val_loader, int(classes), train_loader
        self.learned_gain, self.collapse_margin = float(learned_gain), float(collapse_margin)
        self.lr_drop, self.max_recoveries, self.patience = float(lr_drop), int(max_recoveries), int(patience)
        self._at_chance = 0
        self.best_accuracy = -1.0
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.recoveries: list[dict[str, Any]] = []
        self.stopped_learned = False

    @property
    def chance(self) -> float:
        return 1.0 / self.classes

    def _collapsed(self, train_accuracy: float | None, val_accuracy: float, distinct: int) -> bool:
        """A collapse (back at chance with one class predicted, after doing better), or stuck at chance from the
        start (training accuracy within the margin of chance for ``patience`` epochs in a row)."""
        margin = self.chance + self.collapse_margin
        training_at_chance = train_accuracy is not None and train_accuracy <= margin
        self._at_chance = self._at_chance + 1 if training_at_chance else 0
        at_chance = val_accuracy <= margin or training_at_chance
        did_better = self.best_accuracy > margin
        return (distinct <= 1 and at_chance and did_better) or self._at_chance >= self.patience

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        train_accuracy = evaluate(pl_module, self.train_loader)[0] if self.train_loader is not None else None
        val_accuracy, distinct = evaluate(pl_module, self.val_loader)
        epoch = int(trainer.current_epoch)
        self.history.append(
            {"epoch": epoch, "train_accuracy": train_accuracy, "val_accuracy": val_accuracy, "classes": distinct}
        )
        if self._collapsed(train_accuracy, val_accuracy, distinct) and len(self.recoveries) < self.max_recoveries:
            self._recover(trainer, pl_module, epoch)
            self._at_chance = 0
            return
        if val_accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = val_accuracy, epoch
            self._best_state = copy.deepcopy(pl_module.state_dict())
        if val_accuracy >= self.chance + self.learned_gain * (1.0 - self.chance):
            self.stopped_learned = True
            trainer.should_stop = True

    def _recover(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        if self._best_state is not None:
            pl_module.load_state_dict(self._best_state)
        rates = []
        for optimizer in trainer.optimizers:
            optimizer.state.clear()
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] / self.lr_drop
                rates.append(group["lr"])
        self.recoveries.append({"epoch": epoch, "restored_epoch": self.best_epoch, "lr": rates})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._best_state is not None:  # the reference is the best validation state, not the last
            pl_module.load_state_dict(self._best_state)

    @property
    def report(self) -> dict[str, Any]:
        """What the training did: epochs run, the best epoch and accuracy, why it stopped, the recoveries."""
        if self.stopped_learned:
            stopped = "learned"
        else:
            stopped = "budget spent"
        return {
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_accuracy if self.best_epoch is not None else None,
            "stopped": stopped,
            "recoveries": self.recoveries,
            "history": self.history,
        }

    def describe(self) -> str:
        """One line for the console: what the training did."""
        report = self.report
        runs = report["epochs_run"]
        parts = [f"{runs} epoch{'' if runs == 1 else 's'}, {report['stopped']}"]
        if report["best_epoch"] is not None:
            parts.append(f"kept epoch {report['best_epoch'] + 1} (validation accuracy {self.best_accuracy:.3f})")
        for recovery in self.recoveries:
            parts.append(
                f"collapse at epoch {recovery['epoch'] + 1}: restored epoch "
                f"{'-' if recovery['restored_epoch'] is None else recovery['restored_epoch'] + 1}, "
                f"learning rate {', '.join(f'{r:.2g}' for r in recovery['lr'])}"
            )
        return "; ".join(parts)


def reference_like(model: pl.LightningModule, num_classes: int, class_names: list[str]) -> pl.LightningModule:
    """A fresh model of the user's class and hyperparameters for ``num_classes``, initialised as the user's model
    is (pretrained weights included), with the head re-initialised when its size differs."""
    accepted = inspect.signature(type(model).__init__).parameters
    hparams = {k: v for k, v in dict(model.hparams).items() if k in accepted}  # not the CLI's "_instantiator"
    hparams.update(num_classes=num_classes, class_names=class_names)
    factories = {
        name: getattr(model, attribute)
        for name, attribute in (("optimizer", "optimizer_factory"), ("scheduler", "scheduler_factory"))
        if getattr(model, attribute, None) is not None
    }
    reference = type(model)(**hparams, **factories)
    own = reference.state_dict()
    shared = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
    reference.load_state_dict(shared, strict=False)
    return reference


class ReferenceData(pl.LightningDataModule):
    """A reference's training and validation clips as a data module."""

    def __init__(self, train: Any, val: Any, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self._train, self._val, self.batch_size, self.num_workers = train, val, batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._train, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._val, batch_size=self.batch_size, num_workers=self.num_workers)


def train_reference(
    reference: pl.LightningModule,
    data: ReferenceData,
    steward: ReferenceSteward,
    epochs: int,
    accelerator: str = "auto",
    progress: bool = False,
) -> pl.LightningModule:
    """Train up to ``epochs``; the steward validates every epoch, stops once learned, keeps the best state and
    recovers from a collapse (Lightning's validation stays on: the model's scheduler may step on it)."""
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        callbacks=[steward],
    )
    previous = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(reference, data)
    except SystemExit:
        if trainer.interrupted:  # Lightning caught a Ctrl-C and exits 1: an interrupt, as the caller promises
            raise KeyboardInterrupt from None
        raise
    finally:
        with contextlib.suppress(ValueError, TypeError):  # Lightning ignores SIGINT after catching one
            signal.signal(signal.SIGINT, previous)
    return reference.eval()
