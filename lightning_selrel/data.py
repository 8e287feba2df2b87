"""The built-in motion/context data's old address, kept for one release: use :mod:`lightning_selrel.synthetic`."""

from .synthetic import ClipParams, Cue, MotionContextDataModule, MotionContextDataset

__all__ = ["ClipParams", "Cue", "MotionContextDataModule", "MotionContextDataset"]
