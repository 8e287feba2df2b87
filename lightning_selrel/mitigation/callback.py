"""The static-bias mitigation callback: blends a still video into training clips before each training step.

Add it to any run (``--config callbacks/static_bias_mitigation.yaml``) or any Trainer
(``callbacks=[StaticBiasMitigation()]``); it works with any LightningModule whose training batches hold the clips
(B, C, T, H, W) first (a tuple or list; or a dict, under ``key``) and, for StillMix's frame bank, the labels
second. The clips are replaced in place in ``on_train_batch_start``, so ``training_step`` sees the mixed clips;
validation, test and the monitor see the data as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor
from typing_extensions import override

from lightning_selrel._lightning import Callback, pl
from lightning_selrel.mitigation.blend import background_erasing, still_mix

__all__ = ["METHODS", "StaticBiasMitigation", "mitigation_of"]

#: The mitigations, by the name the callback takes.
METHODS = ("stillmix", "background_erasing")


class StaticBiasMitigation(Callback):
    """Mix still frames into the training clips (:mod:`lightning_selrel.mitigation.blend`), label kept.

    Args:
        method: ``"stillmix"`` (Li et al., ICCV 2023: a still frame of another video, the recommended one) or
            ``"background_erasing"`` (Wang et al., CVPR 2021: a frame of the same clip).
        p: Share of the clips mixed (default: the paper's, 0.5 for StillMix, 1.0 for background erasing).
        alpha: Beta(alpha, alpha) of the weight (default: the paper's, 200 for StillMix, so the clip keeps about
            half; 1 for background erasing, whose weight is ``max_weight`` times the draw).
        max_weight: Background erasing: the largest weight of the added frame (the paper's 0.3).
        bank_size: StillMix: frames kept in the bank of bias-inducing frames (0: the frame comes from another
            clip of the batch, the paper's "random" variant). Candidates enter the bank with the probability the
            model gives their clip's class on the frame alone (the clip frozen to it), the paper's sampling by
            the ground-truth probability of a 2D reference network; the bank is a ring: the newest replace the
            oldest. Until it holds a frame, frames come from the batch.
        bank_every_n_steps: StillMix: score candidates for the bank every this many training steps.
        bank_candidates: StillMix: clips of a batch scored when the bank is fed (one forward pass of this many
            frozen clips, without gradient).
        seed: Seed of every draw (frames, weights, which clips); each rank adds its rank.
        key: Where the clips are when batches are dicts (and ``"label"`` the labels).
    """

    def __init__(
        self,
        method: Literal["stillmix", "background_erasing"] = "stillmix",
        p: float | None = None,
        alpha: float | None = None,
        max_weight: float = 0.3,
        bank_size: int = 256,
        bank_every_n_steps: int = 4,
        bank_candidates: int = 8,
        seed: int = 0,
        key: str = "clips",
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        p = (0.5 if method == "stillmix" else 1.0) if p is None else float(p)
        alpha = (200.0 if method == "stillmix" else 1.0) if alpha is None else float(alpha)
        if not 0 <= p <= 1:
            raise ValueError(f"p (the share of clips mixed) must be in [0, 1], got {p}")
        if not alpha > 0:
            raise ValueError(f"alpha (of the Beta draw of the weight) must be > 0, got {alpha}")
        if not 0 < max_weight <= 1:
            raise ValueError(f"max_weight must be in (0, 1], got {max_weight}")
        for name, value, low in (
            ("bank_size", bank_size, 0),
            ("bank_every_n_steps", bank_every_n_steps, 1),
            ("bank_candidates", bank_candidates, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.method, self.p, self.alpha, self.max_weight = method, p, alpha, float(max_weight)
        self.bank_size, self.bank_every_n_steps, self.bank_candidates = bank_size, bank_every_n_steps, bank_candidates
        self.seed, self.key = int(seed), key
        self._generator: torch.Generator | None = None
        self._restored: Tensor | None = None
        self.bank: Tensor | None = None  # (N, C, H, W) on the model's device
        self._bank_next = 0
        self._bank_filled = 0

    @property
    def state_key(self) -> str:
        return self._generate_state_key(method=self.method, seed=self.seed)

    # -- the batch -----------------------------------------------------------------------------
    def _clips(self, batch: Any) -> Tensor:
        clips = batch if isinstance(batch, Tensor) else None
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
            clips = batch[0]
        elif isinstance(batch, Mapping):
            clips = batch.get(self.key)
        if not isinstance(clips, Tensor) or clips.ndim != 5:
            raise ValueError(
                "StaticBiasMitigation needs training batches that hold the clips (B, C, T, H, W) first (or under "
                f"{self.key!r} in a dict); got {type(batch).__name__}"
                + (f" whose clips have shape {tuple(clips.shape)}" if isinstance(clips, Tensor) else "")
            )
        return clips

    def _labels(self, batch: Any) -> Tensor | None:
        if isinstance(batch, (tuple, list)) and len(batch) > 1 and isinstance(batch[1], Tensor):
            return batch[1]
        if isinstance(batch, Mapping) and isinstance(batch.get("label"), Tensor):
            return batch["label"]
        return None

    # -- hooks ---------------------------------------------------------------------------------
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._generator = torch.Generator().manual_seed(self.seed + trainer.global_rank)
        if self._restored is not None:
            self._generator.set_state(self._restored)
            self._restored = None

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        clips = self._clips(batch)
        if self._generator is None:  # a Trainer that skipped on_train_start (never in fit)
            self._generator = torch.Generator().manual_seed(self.seed + trainer.global_rank)
        if self.method == "background_erasing":
            background_erasing(
                clips, max_weight=self.max_weight, alpha=self.alpha, p=self.p, generator=self._generator, inplace=True
            )
        else:
            if self.bank_size and trainer.global_step % self.bank_every_n_steps == 0:
                labels = self._labels(batch)
                if labels is None:
                    raise ValueError(
                        "StaticBiasMitigation's frame bank scores frames by their clip's class: the training batches "
                        "need the labels second (or under 'label'); or set bank_size: 0"
                    )
                self._feed_bank(pl_module, clips, labels)
            frames = self.bank[: self._bank_filled] if self.bank is not None and self._bank_filled else None
            # in place: training_step gets the same batch object
            still_mix(clips, alpha=self.alpha, p=self.p, frames=frames, generator=self._generator, inplace=True)

    def _feed_bank(self, pl_module: pl.LightningModule, clips: Tensor, labels: Tensor) -> None:
        """Score up to ``bank_candidates`` clips on one random frame each (the clip frozen to it) and keep each
        frame with the probability the model gives its clip's class."""
        g = self._generator
        b, t = clips.shape[0], clips.shape[2]
        count = min(self.bank_candidates, b)
        rows = torch.randperm(b, generator=g)[:count]
        chosen = torch.randint(0, t, (count,), generator=g)
        frames = clips[rows.to(clips.device), :, chosen.to(clips.device)]  # (n, C, H, W)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                logits = pl_module(frames.unsqueeze(2).expand(-1, -1, t, -1, -1))
        finally:
            pl_module.train(was_training)
        probability = logits.float().softmax(dim=1).gather(1, labels[rows.to(labels.device)].long().view(-1, 1))[:, 0]
        kept = frames[(torch.rand(count, generator=g) < probability.cpu()).to(frames.device)]
        if self.bank is None:
            self.bank = torch.empty((self.bank_size, *frames.shape[1:]), dtype=clips.dtype, device=clips.device)
        for frame in kept:
            self.bank[self._bank_next] = frame
            self._bank_next = (self._bank_next + 1) % self.bank_size
            self._bank_filled = min(self._bank_filled + 1, self.bank_size)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.method == "stillmix" and self.bank_size:
            pl_module.log("mitigation/bank_frames", float(self._bank_filled), on_step=False, on_epoch=True)

    # -- checkpointing: a resumed run draws as the uninterrupted one would --------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state() if self._generator is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("generator")
        self._restored = state if isinstance(state, Tensor) else None


def mitigation_of(trainer: pl.Trainer) -> str:
    """What the run's mitigation is, for the HParams table: ``"none"``, or the method with its options
    (``"stillmix(p=0.5, alpha=200, bank=256)"``); several are joined with ``+``."""
    found = []
    for callback in getattr(trainer, "callbacks", None) or []:
        if isinstance(callback, StaticBiasMitigation):
            options = f"p={callback.p:g}, alpha={callback.alpha:g}"
            if callback.method == "stillmix":
                options += f", bank={callback.bank_size}"
            else:
                options += f", max_weight={callback.max_weight:g}"
            found.append(f"{callback.method}({options})")
    return "+".join(found) or "none"
