"""Read what a run wrote, with TensorBoard's own reader (what a user's TensorBoard shows)."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from lightning_selrel.metrics import tags

# The monitor's per-method tags whose values are fractions in [0, 1], from the one definition of the tags.
FRACTIONS = tags.FRACTIONS


def load(logdir: str | Path) -> EventAccumulator:
    events = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def images(events: EventAccumulator) -> dict[str, list]:
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


def layout(events: EventAccumulator) -> layout_pb2.Layout:
    """The layout TensorBoard shows: the run's last (its custom-scalars plugin reads the newest point)."""
    tensor = events.Tensors("custom_scalars__config__")[-1].tensor_proto
    return layout_pb2.Layout.FromString(tensor.string_val[0])
