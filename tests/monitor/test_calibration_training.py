"""The reference steward: the best validation state is kept, training stops once learned, a collapse is
recognised and recovered from, and the report says what happened."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_selrel.monitor.calibration import ReferenceSteward, evaluate


class Scripted(pl.LightningModule):
    """Logits = the clip's two features times a scale plus a bias: the test sets the state an epoch ends in."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return clips * self.scale + self.bias


class FakeTrainer:
    def __init__(self, module: nn.Module) -> None:
        self.optimizers = [torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)]
        self.current_epoch = 0
        self.should_stop = False


def _data(right: int, total: int = 10) -> DataLoader:
    """Clips whose first ``right`` items the identity model classifies rightly (feature of the label larger)."""
    labels = torch.tensor([i % 2 for i in range(total)])
    features = torch.stack([torch.eye(2)[label if i < right else 1 - label] for i, label in enumerate(labels)])
    return DataLoader(TensorDataset(features, labels), batch_size=4)


def _epoch(steward: ReferenceSteward, trainer: FakeTrainer, model: Scripted, scale: float, bias: list[float]) -> None:
    with torch.no_grad():
        model.scale.fill_(scale)
        model.bias.copy_(torch.tensor(bias))
    steward.on_train_epoch_end(trainer, model)
    trainer.current_epoch += 1


def test_a_collapse_restores_the_best_state_clears_the_optimiser_and_lowers_the_learning_rate():
    model = Scripted()
    trainer = FakeTrainer(model)
    trainer.optimizers[0].state[model.scale] = {"momentum_buffer": torch.tensor(5.0)}
    steward = ReferenceSteward(_data(7), 2, _data(7))
    _epoch(steward, trainer, model, 1.0, [0.0, 0.0])  # 0.7: the best so far
    assert steward.best_epoch == 0 and steward.best_accuracy == 0.7 and not trainer.should_stop
    _epoch(steward, trainer, model, 0.0, [5.0, 0.0])  # every prediction class 0: 0.5, a collapse
    assert evaluate(model, _data(7)) == (0.7, 2)  # the best state is back
    assert trainer.optimizers[0].state == {} and trainer.optimizers[0].param_groups[0]["lr"] == 0.1 / 10
    assert steward.recoveries == [{"epoch": 1, "restored_epoch": 0, "lr": [0.1 / 10]}]
    _epoch(steward, trainer, model, 1.0, [0.0, 0.0])  # learns again
    steward.on_train_end(trainer, model)
    report = steward.report
    assert report["epochs_run"] == 3 and report["stopped"] == "budget spent" and len(report["recoveries"]) == 1
    assert [h["val_accuracy"] for h in report["history"]] == [0.7, 0.5, 0.7]
    assert "collapse at epoch 2: restored epoch 1, learning rate 0.01" in steward.describe()


def test_training_stops_once_learned_and_ends_in_the_best_state():
    model = Scripted()
    trainer = FakeTrainer(model)
    steward = ReferenceSteward(_data(10), 2)
    _epoch(steward, trainer, model, 1.0, [0.0, 1.5])  # class 1 always: 0.5, not learned (nor a collapse)
    assert not trainer.should_stop and steward.recoveries == []
    _epoch(steward, trainer, model, 1.0, [0.0, 0.0])  # 1.0: learned
    assert trainer.should_stop and steward.report["stopped"] == "learned" and steward.best_epoch == 1
    with torch.no_grad():
        model.bias.fill_(9.0)  # whatever the last step did
    steward.on_train_end(trainer, model)
    assert torch.equal(model.bias.detach(), torch.zeros(2))


def test_at_chance_from_the_start_is_not_a_collapse_and_recoveries_are_bounded():
    model = Scripted()
    trainer = FakeTrainer(model)
    steward = ReferenceSteward(_data(7), 2, max_recoveries=1)
    _epoch(steward, trainer, model, 0.0, [5.0, 0.0])  # one class from the start: nothing to restore
    assert steward.recoveries == []
    _epoch(steward, trainer, model, 1.0, [0.0, 0.0])
    _epoch(steward, trainer, model, 0.0, [5.0, 0.0])
    _epoch(steward, trainer, model, 0.0, [5.0, 0.0])  # a second collapse: the one recovery is spent
    assert len(steward.recoveries) == 1 and steward.best_epoch == 1


def test_a_reference_stuck_at_chance_from_the_start_is_recovered_after_patience_epochs():
    """The speed reference on the public footage never left chance at Adam's 1e-3 (0.48-0.58 on its training
    clips for 8 epochs): two epochs at chance on the training clips count as stuck."""
    model = Scripted()
    trainer = FakeTrainer(model)
    steward = ReferenceSteward(_data(5), 2, _data(5), patience=2)
    _epoch(steward, trainer, model, 1.0, [0.0, 0.0])  # 0.5 on both, two classes predicted: at chance, once
    assert steward.recoveries == []
    _epoch(steward, trainer, model, 1.0, [0.0, 0.0])  # twice: stuck
    assert len(steward.recoveries) == 1 and trainer.optimizers[0].param_groups[0]["lr"] == 0.1 / 10
    _epoch(steward, trainer, model, 1.0, [0.0, 0.0])  # the count starts again after a recovery
    assert len(steward.recoveries) == 1
