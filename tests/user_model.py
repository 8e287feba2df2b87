"""A video classifier as a user writes it: its own LightningModule, normalisation buffers, a residual block with
BatchNorm, global pooling. Nothing of lightning_selrel's classes; importable as ``user_model.UserClassifier``."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn


class UserClassifier(pl.LightningModule):
    def __init__(self, num_classes: int = 4, channels: int = 4, class_names: list[str] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.register_buffer("mean", torch.tensor([110.0, 115.0, 120.0]).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor([60.0, 58.0, 55.0]).view(1, 3, 1, 1, 1))
        self.stem = nn.Sequential(nn.Conv3d(3, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels), nn.ReLU())
        self.block = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(channels, num_classes)
        self.class_names = class_names or [f"class {i}" for i in range(num_classes)]

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = (clips.float() - self.mean) / self.std
        x = self.stem(x)
        x = self.relu(self.block(x) + x)
        return self.head(torch.flatten(self.pool(x), 1))

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", (self(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)
