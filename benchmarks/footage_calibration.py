"""``calibrate`` on real footage, as a user runs it: a UCF-shaped tree over ``../shared/footage/`` and the default
small C3D at 48 x 48.

Run ``.venv/bin/python benchmarks/footage_calibration.py [--work DIR] [calibrate options...]``. Each public clip
of ``../shared/footage/`` (see its README) is one class, written as MJPG .avi at 56 x 74 (so that decoding is
cheap): its last third (at least 48 frames) is its validation video (the test list), the rest its training video
(the train list), from which training draws a new random window at every access. Then ``python -m
lightning_selrel calibrate`` runs with the default small C3D (width 8, fc_dim 128, the default optimiser) on that
tree with the options given after the script's own, and the report is printed: what each reference's training
did, the recommendation or why there is none, and the time. ``--per-video`` also prints, per validation video, its
probe clips' mean frame difference and the two references' paired gap (static minus motion spatial bias, mean and
spread over that video's clips) for DTD and the Guided family at n_std 4 and 6: where a separation comes from.

The two videos of one clip share its scene, so the static reference tells the classes apart by appearance, as it
should: the classes here are the scenes. The speed task of the motion reference does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning_selrel.monitor.calibration as cal  # noqa: E402
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
    parser.add_argument("--per-video", action="store_true", help="the references' paired gap per validation video")
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
    seen: list[tuple[Any, dict]] = []  # (probe clips, per-clip spatial bias) per reference, static first
    measure = cal.per_clip_bias

    def recording(model: Any, clips: Any, *more: Any, **options: Any) -> dict:
        biases = measure(model, clips, *more, **options)
        seen.append((clips.cpu(), biases))
        return biases

    started = time.perf_counter()
    cal.per_clip_bias = recording  # calibrate reads it from the package at call time
    try:
        code = calibrate(options)
    finally:
        cal.per_clip_bias = measure
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
        if args.per_video and len(seen) == 2:
            print(per_video(data, seen, annotations, args.clips_per_video))
    print(f"calibrate exited {code} after {seconds:.0f} s")
    return code


def per_video(data: dict, seen: list[tuple[Any, dict]], annotations: Path, clips_per_video: int) -> str:
    """The paired gap (static minus motion spatial bias) per validation video, with its clips' motion."""
    (clips, static), (_, motion) = seen
    names = [line.split()[1] for line in (annotations / "classInd.txt").read_text().splitlines()]
    videos = np.array([names[i // clips_per_video] for i in data["probe"]["indices"]])
    energy = np.array([cal.motion_energy(clip) for clip in clips])
    lines = [
        "per validation video: probe clips, their mean |frame difference| (grey levels), and the paired gap "
        "static - motion, mean (sd) over the video's clips",
        "",
        "| video | clips | frame difference | " + " | ".join(f"{m} {r} n={n:g}" for m, r, n in _ROWS) + " |",
        "|---|---:|---|" + "---:|" * len(_ROWS),
    ]
    for video in dict.fromkeys(videos):
        at = videos == video
        cells = []
        for method, rule, n in _ROWS:
            key = next((k for k in static.get(method, {}).get(rule, {}) if float(k) == n), None)
            if key is None:
                cells.append("-")
                continue
            gap = np.array(static[method][rule][key], dtype=float)[at] - np.array(motion[method][rule][key])[at]
            cells.append(f"{np.nanmean(gap):+.3f} ({np.nanstd(gap):.3f})")
        lines.append(
            f"| {video} | {int(at.sum())} | {energy[at].min():.2f}-{energy[at].max():.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


_ROWS = [(m, r, n) for m in ("dtd", "guided_backprop", "guided_gradcam") for r in ("std", "mad") for n in (4.0, 6.0)]


if __name__ == "__main__":
    raise SystemExit(main())
