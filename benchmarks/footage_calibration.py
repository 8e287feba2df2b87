"""``calibrate`` on real footage, as a user runs it: a UCF-shaped tree over ``../shared/footage/`` and the default
small C3D at 48 x 48.

Run ``.venv/bin/python benchmarks/footage_calibration.py [--work DIR] [calibrate options...]``. Each public clip
of ``../shared/footage/`` (see its README) is one class, written as MJPG .avi at 56 x 74 (so that decoding is
cheap): its last third (at least 48 frames) is its validation video (the test list), the rest its training video
(the train list), from which training draws a new random window at every access. Then ``python -m
lightning_selrel calibrate`` runs with the default small C3D (width 8, fc_dim 128, the default optimiser) on that
tree with the options given after the script's own, and the report is printed: what each reference's training
did, the recommendation or why there is none, and the time.

The two videos of one clip share its scene, so the static reference tells the classes apart by appearance, as it
should: the classes here are the scenes. The speed task of the motion reference does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_selrel.commands.calibrate import main as calibrate  # noqa: E402

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
SIZE = (56, 74)  # (H, W) the videos are written at; the data module crops 48 x 48 from them


def read_frames(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Every frame of a video, resized to ``size`` (H, W), RGB uint8 (T, H, W, 3)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise RuntimeError(f"OpenCV read no frame from {path}")
    return np.stack(frames)


def write_tree(footage: Path, base: Path, size: tuple[int, int] = SIZE) -> tuple[Path, Path]:
    """The UCF-shaped tree (videos, split lists) over the clips of ``footage``; returns (root, annotations)."""
    videos = sorted(p for p in footage.iterdir() if p.suffix.lower() in (".avi", ".mp4"))
    if not videos:
        raise FileNotFoundError(f"no .avi or .mp4 in {footage}")
    root, annotations = base / "videos", base / "lists"
    annotations.mkdir(parents=True, exist_ok=True)
    classes, train, test = [], [], []
    for label, video in enumerate(videos, start=1):
        name = "".join(c for c in video.stem.title() if c.isalnum())
        classes.append(f"{label} {name}")
        (root / name).mkdir(parents=True, exist_ok=True)
        frames = read_frames(video, size)
        held = max(len(frames) // 3, 3 * 16)  # the last third (at least one 3x-speed window) is the validation video
        if len(frames) - held < 3 * 16:
            raise ValueError(f"{video} has {len(frames)} frames: too short for a training and a validation window")
        for group, piece in enumerate((frames[: len(frames) - held], frames[len(frames) - held :]), start=1):
            file_name = f"v_{name}_g{group:02d}_c01.avi"
            writer = cv2.VideoWriter(str(root / name / file_name), cv2.VideoWriter_fourcc(*"MJPG"), 25, size[::-1])
            for frame in piece:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
            (train if group == 1 else test).append(f"{name}/{file_name}")
    (annotations / "classInd.txt").write_text("\n".join(classes) + "\n")
    labels = {c.split()[1]: c.split()[0] for c in classes}
    (annotations / "trainlist01.txt").write_text("".join(f"{t} {labels[t.split('/')[0]]}\n" for t in train))
    (annotations / "testlist01.txt").write_text("".join(f"{t}\n" for t in test))
    return root, annotations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, default=FOOTAGE)
    parser.add_argument("--work", type=Path, default=Path("footage_calibration"), help="tree and output folder")
    parser.add_argument("--clips-per-video", type=int, default=32)
    args, rest = parser.parse_known_args(argv)
    if not args.footage.is_dir():
        print(f"footage folder {args.footage} not found (see ../shared/footage/README.md)", file=sys.stderr)
        return 2
    root, annotations = write_tree(args.footage, args.work / "tree")
    options = [
        "--out",
        str(args.work / "calibration"),
        "--overwrite",
        "--data",
        "lightning_selrel.UCF101DataModule",
        f"--data.root={root}",
        f"--data.annotation_dir={annotations}",
        f"--data.resize=[{SIZE[0]}, {SIZE[1]}]",
        "--data.crop=48",
        f"--data.clips_per_video={args.clips_per_video}",
        "--data.batch_size=16",
        "--data.num_workers=0",
        "--trainer.enable_progress_bar=false",
        *rest,
    ]
    started = time.perf_counter()
    code = calibrate(options)
    seconds = time.perf_counter() - started
    result = args.work / "calibration" / "calibration.json"
    if code == 0 and result.is_file():
        data = json.loads(result.read_text())
        for name, reference in data["references"].items():
            training = reference.get("training", {})
            print(
                f"{name}: accuracy {reference['accuracy']:.3f}, frozen {reference['frozen_accuracy']:.3f}, "
                f"{training.get('epochs_run')} epochs ({training.get('stopped')}), "
                f"{len(training.get('recoveries', []))} recoveries"
            )
        print("recommended:", data["recommended"], "| refused:", data["refused"])
    print(f"calibrate exited {code} after {seconds:.0f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
