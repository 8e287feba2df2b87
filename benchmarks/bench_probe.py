"""The motion/context probe, with a still camera, a panning camera and large actors: does each method's
number order a model that uses motion below one that uses static context, under each threshold rule?

For every camera variant it trains the two probe presets (`configs/probe_motion.yaml`,
`configs/probe_context.yaml`: same small C3D, seed and budget, only the cue differs) with the variant's
data options, explains the same probe clips of each model with every method, and reports per method, at
`n_std` = 4, for the paper's threshold rule (`std`) and the robust one (`mad`):

- spatial bias of the motion model / the context model, and the separation: their difference over the
  pooled population std over clips (positive = ordered as it should be);
- the motion mass precision against the exact masks, baseline and selective (the share of the positive
  relevance that lies on the moving objects);
- the share of clips whose selective map is empty.

A second table compares the relevant-area definitions by how well the selectivity area they give separates
the two models (mean |separation| over methods).

    python benchmarks/bench_probe.py                      # all three variants, about 20 minutes on 2 CPU cores
    python benchmarks/bench_probe.py --variants still pan --num-clips 32
    python benchmarks/bench_probe.py --arch r2plus1d_18 --variants still   # the probe on C3D's successor
    python benchmarks/bench_probe.py --arch r2plus1d_18 --variants still --gradcam-layers net.layer3

`--gradcam-layers` adds rows for the GradCAM family read at other layers of the same trained models
(`gradcam@net.layer3`); the default rows read the model's own GradCAM layer.

A third table gives the behavioural cross-check of each model (accuracy with the motion removed or scrambled,
and reliance, the probability lost when frozen).

Prints Markdown (the README's probe tables) and writes every per-clip value to `--json` if given.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from lightning_selrel import MotionContextDataset, VideoClassifier, available_methods, explain_with_logits, motion_mask
from lightning_selrel.commands import main
from lightning_selrel.metrics.functional import clip_scores, mask_iou, selectivity
from lightning_selrel.monitor.behaviour import BEHAVIOUR, behaviour
from lightning_selrel.relevance.methods import GRADCAM_FAMILY
from lightning_selrel.relevance.selective import THRESHOLDS, selective_relevance

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "still": [],
    "pan": ["--data.init_args.camera_speed=1.5"],
    "large": ["--data.init_args.object_size=[0.5,0.7]"],
}
AREAS = (("positive", 0.1), ("top", 0.1), ("mass", 0.5), ("mass", 0.8))
FLOW_THRESHOLD = 1.5  # the monitor's default (benchmarks/bench_flow_threshold.py)


def train(cue: str, variant: str, root: Path, arch: str, seed: int | None = None) -> tuple[VideoClassifier, float]:
    held_out = [] if seed is None else [f"--seed_everything={seed}", f"--data.init_args.seed={seed}"]
    cli = main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / f"probe_{cue}.yaml"),
            "--trainer.callbacks=[]",  # the models do not depend on the monitor; measured below instead
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root / f'{variant}_{cue}'}",
            f"--model.arch={arch}",
            *VARIANTS[variant],
            *held_out,
        ]
    )
    model = VideoClassifier.load_from_checkpoint(cli.trainer.checkpoint_callback.best_model_path, map_location="cpu")
    return model.eval(), float(cli.trainer.callback_metrics["val/acc"])


def explainers(gradcam_layers: list[str]) -> list[tuple[str, str, dict]]:
    """(row label, method, options): every method at its defaults, then the GradCAM family at each extra layer."""
    rows = [(method, method, {}) for method in available_methods()]
    for layer in gradcam_layers:
        rows += [(f"{m}@{layer}", m, {"layer": layer}) for m in available_methods() if m in GRADCAM_FAMILY]
    return rows


def labels(result: dict) -> list[str]:
    """The row labels measured in one model's result, in measurement order."""
    return list(dict.fromkeys(key.split("/")[0] for key in result if "/" in key))


def measure(
    model: VideoClassifier,
    dataset: MotionContextDataset,
    indices: list[int],
    n_std: float,
    gradcam_layers: list[str],
    flow_threshold: float = FLOW_THRESHOLD,
) -> dict:
    """Per-clip values of every method: scores under each rule and the selectivity area per definition."""
    items = [dataset[i] for i in indices]
    clips = torch.stack([clip for clip, _, _ in items])
    labels = torch.tensor([label for _, label, _ in items])
    exact = torch.stack([mask for _, _, mask in items])
    flow = torch.stack([motion_mask(clip, threshold=flow_threshold) for clip in clips])
    out: dict = {"behaviour": {k: v.tolist() for k, v in behaviour(model, clips, labels).items()}}
    for label, method, options in explainers(gradcam_layers):
        relevance = torch.cat(
            [explain_with_logits(model, clips[s : s + 8], method, **options).relevance for s in range(0, len(clips), 8)]
        )
        for rule in THRESHOLDS:
            selective = selective_relevance(relevance, n_std=n_std, threshold=rule)
            scores = clip_scores(relevance, selective, flow=flow, exact=exact)
            scores["selective_empty"] = ((selective > 0).flatten(1).sum(1) == 0).double()
            for area, fraction in AREAS:
                scores[f"area_{area}{fraction:g}"] = selectivity(
                    relevance, selective, relevant=area, fraction=fraction
                ).area
            out[f"{label}/{rule}"] = {name: values.tolist() for name, values in scores.items()}
    return out


def separation(motion: list[float], context: list[float]) -> float:
    """(mean context - mean motion) / pooled population std over clips; NaN values are left out."""
    a, b = np.array(motion, dtype=float), np.array(context, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    pooled = np.sqrt((a.var() + b.var()) / 2)
    return float((b.mean() - a.mean()) / pooled) if pooled > 0 else float("nan")


def mean(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def tables(results: dict, n_std: float) -> str:
    lines = []
    for variant, result in results.items():
        motion, context = result["motion"], result["context"]
        acc = result["acc"]
        lines += [
            f"**{variant}** (val/acc motion {acc['motion']:.3f}, context {acc['context']:.3f}; flow marks "
            f"{result['flow_share']:.0%} of voxels as moving, the exact masks {result['moving_share']:.0%}, IoU "
            f"{result.get('flow_iou', float('nan')):.2f} pooled, "
            f"{result.get('flow_iou_per_clip', float('nan')):.2f} per clip), "
            f"n_std = {n_std:g}, motion model / context model:",
            "",
            "| method | rule | spatial bias | separation | mask mass precision | selective mask mass precision "
            "| empty selective maps |",
            "|---|---|---|---:|---|---|---|",
        ]

        def pair(m: dict, c: dict, name: str, digits: int = 3) -> str:
            return f"{mean(m[name]):.{digits}f} / {mean(c[name]):.{digits}f}"

        for method in labels(motion):
            for rule in THRESHOLDS:
                m, c = motion[f"{method}/{rule}"], context[f"{method}/{rule}"]
                bias = separation(m["spatial_bias"], c["spatial_bias"])
                lines.append(
                    f"| {method} | {rule} | {pair(m, c, 'spatial_bias')} | {bias:+.2f} | "
                    f"{pair(m, c, 'mask_precision_mass')} | {pair(m, c, 'selective_mask_precision_mass')} | "
                    f"{pair(m, c, 'selective_empty', 2)} |"
                )
        lines.append("")
    lines += [
        "Relevant-area definitions: mean over methods of |separation| of the selectivity area they give (n_std = "
        f"{n_std:g}):",
        "",
        "| relevant area | " + " | ".join(f"{v} / {r}" for v in results for r in THRESHOLDS) + " |",
        "|---|" + "---:|" * (len(results) * len(THRESHOLDS)),
    ]
    for area, fraction in AREAS:
        name = {
            "positive": "R > 0 (paper)",
            "top": f"top {fraction:.0%} of voxels",
            "mass": f"core, {fraction:.0%} of the mass",
        }[area]
        cells = []
        for result in results.values():
            for rule in THRESHOLDS:
                key = f"area_{area}{fraction:g}"
                seps = [
                    separation(result["motion"][f"{m}/{rule}"][key], result["context"][f"{m}/{rule}"][key])
                    for m in available_methods()
                ]
                cells.append(f"{np.nanmean(np.abs(seps)):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Behaviour on the same probe clips (motion model / context model):",
        "",
        "| variant | acc | frozen | shuffled | reversed | unchanged frozen | contrasted acc | reliance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, result in results.items():
        m, c = result["motion"]["behaviour"], result["context"]["behaviour"]
        cells = [f"{mean(m[name]):.3f} / {mean(c[name]):.3f}" for name in BEHAVIOUR]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(
    variants: list[str],
    num_clips: int,
    n_std: float,
    root: Path,
    arch: str = "c3d",
    gradcam_layers: list[str] | None = None,
    seed: int | None = None,
    flow_threshold: float = FLOW_THRESHOLD,
) -> dict:
    results = {}
    data_seed = {} if seed is None else {"seed": seed}
    for variant in variants:
        options = (
            {"camera_speed": 1.5} if variant == "pan" else {"object_size": (0.5, 0.7)} if variant == "large" else {}
        )
        dataset = MotionContextDataset(size=256, split="val", cue="motion", **options, **data_seed)
        draw = np.random.default_rng(0 if seed is None else seed)
        indices = sorted(int(i) for i in draw.choice(len(dataset), num_clips, replace=False))
        result: dict = {"acc": {}}
        for cue in ("motion", "context"):
            model, acc = train(cue, variant, root, arch, seed)
            result["acc"][cue] = acc
            data = MotionContextDataset(size=256, split="val", cue=cue, **options, **data_seed)
            result[cue] = measure(model, data, indices, n_std, gradcam_layers or [], flow_threshold)
        masks = torch.stack([dataset[i][2] for i in indices])
        flows = torch.stack([motion_mask(dataset[i][0], threshold=flow_threshold) for i in indices])
        result["moving_share"] = float(masks.float().mean())
        result["flow_share"] = float(flows.float().mean())
        result["flow_iou"] = float((flows & masks).sum() / (flows | masks).sum())  # pooled over the probe clips
        result["flow_iou_per_clip"] = float(mask_iou(flows, masks).nanmean())  # the monitor's selrel/probe/flow_iou
        results[variant] = result
        print(f"{variant}: done", flush=True)
    return results


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--num-clips", type=int, default=64, help="probe clips per model (default 64)")
    parser.add_argument("--n-std", type=float, default=4.0)
    parser.add_argument("--json", help="write every per-clip value here")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="a held-out probe: seed of the models (seed_everything), of the clips and of the probe draw (default: "
        "the presets' seeds and draw 0, on which the project's design choices were made)",
    )
    parser.add_argument(
        "--flow-threshold",
        type=float,
        default=FLOW_THRESHOLD,
        help=f"flow mask threshold in px (default {FLOW_THRESHOLD:g}, the monitor's)",
    )
    parser.add_argument(
        "--arch", default="c3d", help="the network of both probe models (default c3d; r2plus1d_18, r3d_18)"
    )
    parser.add_argument(
        "--gradcam-layers",
        nargs="+",
        default=[],
        metavar="LAYER",
        help="also read the GradCAM family at these layers (dotted names in the LightningModule: net.layer3)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        results = run(
            args.variants,
            args.num_clips,
            args.n_std,
            Path(tmp),
            args.arch,
            args.gradcam_layers,
            args.seed,
            args.flow_threshold,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    print(f"arch: {args.arch}\n")
    print(tables(results, args.n_std))
