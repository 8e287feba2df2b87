"""Clips for training and explaining: video frames, the built-in motion/context data, UCF-101 and the cache.

- :mod:`~lightning_selrel.data.frames`: decoding, loop padding, resize and centre crop (one geometry for
  training and inference);
- :mod:`~lightning_selrel.data.synthetic`: the built-in motion/context clips, with exact motion masks;
- :mod:`~lightning_selrel.data.conflict`: cue-conflict clips (motion one class, context another), the interface
  a data module offers them by;
- :mod:`~lightning_selrel.data.clips`: clips of a list of video files (the train and evaluation transforms);
- :mod:`~lightning_selrel.data.video_list`: any dataset given as annotation lists (``VideoListDataModule``), and
  what every video-file data module shares;
- :mod:`~lightning_selrel.data.ucf101`: UCF-101's split files and its data module;
- :mod:`~lightning_selrel.data.cache`: a cache of decoded videos (JPEG frames or memory-mapped uint8).

Nothing here imports the models, explanations or the monitor.
"""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    "ClipParams": ".synthetic",
    "ConflictClips": ".conflict",
    "Cue": ".synthetic",
    "MotionContextDataModule": ".synthetic",
    "MotionContextDataset": ".synthetic",
    "UCF101DataModule": ".ucf101.datamodule",
    "VideoListDataModule": ".video_list",
    "UCF101Clips": ".clips",
    "FramePrep": ".frames",
    "decode_window": ".frames",
    "decode_video": ".frames",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
