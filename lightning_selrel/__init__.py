"""lightning_selrel: selective relevance for video models, as a PyTorch Lightning framework."""

from .classifier import C3DClassifier
from .model import C3D

__all__ = ["C3D", "C3DClassifier"]
__version__ = "0.1.0"
