"""UCF-101: its official split files (:mod:`.splits`) and its LightningDataModule (:mod:`.datamodule`)."""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    "UCF101DataModule": ".datamodule",
    "FolderIndex": ".splits",
    "read_class_index": ".splits",
    "read_split": ".splits",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
