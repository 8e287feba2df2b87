"""The data loader every data module of this package builds (:func:`clip_loader`)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["clip_loader"]


def clip_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int | None = None,
    pin_memory: bool | None = False,
) -> DataLoader:
    """A loader of ``dataset``: workers kept between epochs; with ``seed`` (and ``shuffle``) a seeded shuffle;
    ``pin_memory`` None pins batches when CUDA is available."""
    generator = torch.Generator().manual_seed(seed) if shuffle and seed is not None else None
    pin = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator,
        pin_memory=pin,
    )
