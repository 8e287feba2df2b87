"""Baseline explanations of video clips, by name: ``explain(model, clips, "dtd")``.

Every method returns relevance over the input voxels, (B, T, H, W) float32, channels summed
(docs/method.md, section 2), for one class per clip (the predicted one by default):

- ``dtd``: deep Taylor decomposition, our own (:mod:`lightning_selrel.relevance.dtd`), started from relevance 1
  at the explained class (the map sums to 1 and is non-negative for every clip; ``start="logit"``
  gives the classic logit-started map).
- ``gradcam``: captum's ``LayerGradCam`` at the last Conv3d (or ``layer=``), gradient averaged
  over (T', H', W') per channel, ReLU of the weighted sum as in the original paper
  (``relu_attributions=True``), upsampled trilinearly (``align_corners=False``) to (T, H, W).
  The activations are the layer's output: for the default last Conv3d (C3D's ``conv5b``) that is
  before its ReLU; ``layer="net.relu5b"`` gives the post-ReLU feature maps instead.
- ``gradcam_t``: time-aware GradCAM, the gradient averaged over (H', W') per channel *and* time
  step, so each of the T' cells gets its own channel weights; otherwise as ``gradcam``.
- ``guided_backprop``: captum's ``GuidedBackprop``.
- ``guided_gradcam``: captum's ``GuidedGradCam`` with trilinear upsampling: Guided Backprop
  times the upsampled ``gradcam`` map.

What is explained is what the classifier's forward takes: the clip in pixel scale. Gradient
methods differentiate w.r.t. the float32 pixel clip, so Guided Backprop is the normalised-input
gradient scaled by 1/std per channel (GradCAM maps do not depend on this). DTD's relevance of the
normalised input *is* the relevance of the pixel input (the normalisation is element-wise), and
its zB bounds are the normalised pixel range.

Explaining is safe anywhere: under ``no_grad`` or ``inference_mode`` (a Lightning validation
hook), under autocast (explanations run in float32), with the model in train mode (it runs in eval
mode and restores every submodule's mode). It never changes the caller's tensor, the parameters'
``requires_grad`` or ``.grad`` (gradients come from ``torch.autograd.grad``), and leaves no hooks
behind, also when the model raises.

New methods register themselves with ``@register_method("name")``; a method is called as
``fn(model, clips, target, **options)`` with float32 clips on the model's device inside the safe
context, and returns an :class:`Explanation`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, GuidedGradCam, LayerGradCam
from torch import Tensor, nn

from lightning_selrel.relevance.dtd import dtd, dtd_graph, select_target

__all__ = [
    "GRADCAM_FAMILY",
    "Explanation",
    "available_methods",
    "check_methods",
    "check_model",
    "explain",
    "explain_with_logits",
    "layer_name",
    "method_options",
    "temporal_cells",
    "register_method",
    "resolve_layer",
]

Target = int | Sequence[int] | Tensor | None


class Explanation(NamedTuple):
    """What one call explains, for a batch of B clips.

    Attributes:
        relevance: (B, T, H, W) float32, channels summed.
        logits: (B, num_classes) float32 from the same forward pass (eval mode); the prediction is
            ``logits.argmax(1)``.
        target: (B,) long, the class each clip was explained for.
    """

    relevance: Tensor
    logits: Tensor
    target: Tensor


Method = Callable[..., Explanation]
_METHODS: dict[str, Method] = {}
#: The methods that read a 5-D convolutional layer (:func:`resolve_layer`; ``layer=`` names another).
GRADCAM_FAMILY = ("gradcam", "gradcam_t", "guided_gradcam")


def method_options(method: str, *, layer: nn.Module | str | None = None) -> dict[str, Any]:
    """The options to explain ``method`` with: ``layer`` for the GradCAM family when one is named (None or "": the
    default layer), none otherwise (the other methods take no layer)."""
    return {"layer": layer} if method in GRADCAM_FAMILY and layer is not None and layer != "" else {}


def register_method(name: str) -> Callable[[Method], Method]:
    """Decorator that makes an explanation method available to :func:`explain` under ``name``."""

    def decorator(fn: Method) -> Method:
        if name in _METHODS:
            raise ValueError(f"explanation method {name!r} is already registered")
        _METHODS[name] = fn
        return fn

    return decorator


def available_methods() -> tuple[str, ...]:
    """Names :func:`explain` accepts, sorted (for early validation of a config)."""
    return tuple(sorted(_METHODS))


def check_methods(methods: Sequence[str]) -> list[str]:
    """The method names as a list, after checking they are known, distinct and at least one.

    Raises:
        ValueError: Naming the unknown or repeated names and listing the valid ones.
    """
    methods = list(methods)
    unknown = [m for m in methods if m not in _METHODS]
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if unknown or repeated or not methods:
        problem = (
            f"unknown explanation method(s) {unknown}"
            if unknown
            else f"method(s) listed twice {repeated}"
            if repeated
            else "no explanation method given"
        )
        raise ValueError(f"{problem}; valid methods: {', '.join(available_methods())}")
    return methods


def check_model(model: nn.Module, methods: Sequence[str], *, layer: nn.Module | str | None = None) -> None:
    """What a model needs to be explained, checked before any clip is: the requirements of every method.

    Any ``nn.Module`` (a LightningModule included) whose ``forward`` takes the clips as the data yields them,
    (B, C, T, H, W), and returns logits (B, num_classes):

    - **every method**: at least one parameter (explanations run on the parameters' device);
    - **GradCAM family** (``gradcam``, ``gradcam_t``, ``guided_gradcam``): a 5-D convolutional layer: ``layer``
      (a module or its dotted name), else the one the model declares in a ``gradcam_layer`` attribute, else its
      last ``Conv3d`` (:func:`resolve_layer`);
    - **dtd**: a model ``torch.fx`` can trace (no data-dependent control flow in ``forward``; wrap shape checks with
      ``torch.fx.wrap``), every operation on the way from the input to the logits one with a DTD rule (Conv3d,
      Linear, BatchNorm3d after a Conv3d, ReLU, pooling, residual sums, reshapes, elementwise arithmetic with
      constants; see :mod:`lightning_selrel.relevance.dtd`), and a known input range for the zB rule: the clips are
      uint8 pixels, the model normalises with :class:`~lightning_selrel.models.c3d.Normalize`, or it declares
      ``input_range = (low, high)`` (scalars or per-channel tensors) for the values its forward takes.

    Raises:
        ValueError: Naming the first requirement the model misses and what to change.
    """
    methods = check_methods(methods)
    if next(model.parameters(), None) is None:
        raise ValueError(f"{type(model).__name__} has no parameters: there is nothing to explain")
    if any(m in GRADCAM_FAMILY for m in methods):
        resolve_layer(model, layer)
    if "dtd" in methods:
        try:
            dtd_graph(model)
        except TypeError as error:
            raise ValueError(f"dtd cannot explain {type(model).__name__}: {error}") from None


def explain(model: nn.Module, clips: Tensor, method: str, target: Target = None, **options: Any) -> Tensor:
    """Relevance (B, T, H, W) float32 of every voxel of ``clips`` for one class per clip.

    Args:
        model: The classifier (e.g. a :class:`~lightning_selrel.models.classifier.VideoClassifier`).
        clips: What the model's forward takes: (B, C, T, H, W), pixel scale, uint8 or float.
        method: One of :func:`available_methods`.
        target: Class per clip: ``None`` (the predicted class), an int, a list or a LongTensor (B,).
        **options: Method options: ``layer`` (a module or dotted name such as ``"net.conv5b"``) for
            the GradCAM family; ``first_rule``, ``bounds``, ``maxpool``, ``eps``, ``start`` for ``dtd`` (see
            :func:`lightning_selrel.relevance.dtd.dtd`).

    Returns:
        Relevance on the model's device. Use :func:`explain_with_logits` to get the logits and the
        explained classes of the same pass as well.

    Raises:
        ValueError: For an unknown method (the message lists the valid ones), bad clips or target.
    """
    return explain_with_logits(model, clips, method, target, **options).relevance


def explain_with_logits(
    model: nn.Module, clips: Tensor, method: str, target: Target = None, **options: Any
) -> Explanation:
    """Like :func:`explain`, but returns relevance, logits and target of the same forward pass.

    The monitor needs the prediction and the logits of the explained clips; every method gets them
    from its own forward pass, so this costs nothing extra.
    """
    (method,) = check_methods([method])
    fn = _METHODS[method]
    if not isinstance(clips, Tensor) or clips.ndim != 5:
        shape = tuple(clips.shape) if isinstance(clips, Tensor) else type(clips).__name__
        raise ValueError(f"clips must be a tensor (B, C, T, H, W), got {shape}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else clips.device
    with _explaining(model, device):
        # A fresh copy: never the caller's tensor (captum sets requires_grad on its input), and a
        # normal tensor even if the clips were made under inference mode. Float32, unless the model's
        # own parameters are half precision (a "16-true" or "bf16-true" trainer): then theirs.
        dtype = param.dtype if param is not None and param.dtype in (torch.float16, torch.bfloat16) else torch.float32
        x = clips.detach().to(device=device, dtype=dtype, copy=True)
        if method == "dtd":  # uint8 clips are pixels: the zB bounds when the model declares no other range
            options.setdefault("pixel_input", clips.dtype == torch.uint8)
        result = fn(model, x, target, **options)
    relevance = result.relevance.detach().float()
    if relevance.shape != (clips.shape[0], *clips.shape[2:]):
        raise RuntimeError(
            f"method {method!r} returned relevance {tuple(relevance.shape)} for clips {tuple(clips.shape)}"
        )
    return Explanation(relevance, result.logits.detach().float(), result.target.detach())


@contextlib.contextmanager
def _explaining(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Gradients on, inference mode and autocast off, eval mode; restores every submodule's mode."""
    modes = [(m, m.training) for m in model.modules()]
    autocast_off = [torch.autocast(device_type="cpu", enabled=False)]
    if device.type != "cpu" and device.type in ("cuda", "xpu", "mps", "hpu"):
        autocast_off.append(torch.autocast(device_type=device.type, enabled=False))
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            for ctx in autocast_off:
                stack.enter_context(ctx)
            model.eval()
            yield
    finally:
        for module, training in modes:
            module.training = training


# -- helpers ------------------------------------------------------------------------------------
def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """The GradCAM layer: ``layer`` itself, the submodule named ``layer``, the layer the model (or a submodule of
    it) declares as a dotted name in a ``gradcam_layer`` attribute (the ResNets: ``"layer4"``, the last stage's
    output after its residual sum), or else the last Conv3d."""
    if layer is None:
        for name, module in model.named_modules():
            declared = getattr(module, "gradcam_layer", None)
            if isinstance(declared, str) and declared:
                return resolve_layer(model, f"{name}.{declared}" if name else declared)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
        if not convs:
            raise ValueError(
                f"the GradCAM family needs a 5-D convolutional layer; {type(model).__name__} has no Conv3d: name one "
                "with layer= (the monitor's gradcam_layer)"
            )
        return convs[-1]
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv3d)]
            raise ValueError(f"model has no layer {layer!r}; its Conv3d layers are {convs}") from None
    if not any(m is layer for m in model.modules()):
        raise ValueError(f"layer {layer} is not a submodule of the model")
    return layer


def layer_name(model: nn.Module, layer: nn.Module | str | None = None) -> str:
    """The dotted name, in ``model``, of the layer the GradCAM family reads for ``layer`` (see
    :func:`resolve_layer`): what a calibration records and the monitor compares."""
    resolved = resolve_layer(model, layer)
    return next(name for name, module in model.named_modules() if module is resolved)


#: The temporal Sobel stencil spans three frames: a map resolved on fewer time steps cannot show change within
#: the clip, only between its halves (the trilinear upsampling makes the first and last quarter constant).
MIN_TEMPORAL_CELLS = 3


def temporal_cells(model: nn.Module, clip: Tensor, layer: nn.Module | str | None = None) -> int:
    """How many time steps the GradCAM family's layer (:func:`resolve_layer`) resolves for clips like ``clip``
    (C, T, H, W): one forward pass without gradient and in eval mode (BatchNorm's statistics stay as they are),
    reading the layer's output shape; the model's mode is restored."""
    seen: list[int] = []
    handle = resolve_layer(model, layer).register_forward_hook(lambda m, i, out: seen.append(int(out.shape[2])))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(clip[None])
    finally:
        handle.remove()
        model.train(was_training)
    return seen[0]


def _upsample(cam: Tensor, size: Sequence[int]) -> Tensor:
    """(B, 1, T', H', W') -> (B, T, H, W), trilinear, align_corners=False."""
    return F.interpolate(cam, size=tuple(size), mode="trilinear", align_corners=False)[:, 0]


class _TargetLogit(nn.Module):
    """``model`` followed by picking the explained logit per clip: (B, C, T, H, W) -> (B,).

    Resolving ``target=None`` to the argmax inside the forward lets captum explain the predicted
    class without a separate forward pass; the logits and targets of the pass are kept.
    """

    def __init__(self, model: nn.Module, target: Target) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.logits: Tensor | None = None
        self.chosen: Tensor | None = None

    def forward(self, clips: Tensor) -> Tensor:
        logits = self.model(clips)  # (B, num_classes)
        chosen = select_target(self.target, logits)
        self.logits, self.chosen = logits.detach(), chosen
        return logits.gather(1, chosen[:, None])[:, 0]  # (B,)

    def explanation(self, relevance: Tensor) -> Explanation:
        assert self.logits is not None and self.chosen is not None
        return Explanation(relevance, self.logits, self.chosen)


@contextlib.contextmanager
def _quiet_captum() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
        yield


# -- methods ------------------------------------------------------------------------------------
@register_method("dtd")
def _dtd(model: nn.Module, clips: Tensor, target: Target, **options: Any) -> Explanation:
    relevance, logits, chosen = dtd(model, clips, target, **options)
    return Explanation(relevance.sum(dim=1), logits, chosen)  # (B, T, H, W)


@register_method("gradcam")
def _gradcam(model: nn.Module, clips: Tensor, target: Target, *, layer: nn.Module | str | None = None) -> Explanation:
    head = _TargetLogit(model, target)
    cam = LayerGradCam(head, resolve_layer(model, layer)).attribute(clips, relu_attributions=True)
    if cam.ndim != 5:
        raise ValueError(f"GradCAM needs a layer with 5-D output (B, C, T', H', W'), got {tuple(cam.shape)}")
    return head.explanation(_upsample(cam, clips.shape[2:]))


@register_method("gradcam_t")
def _gradcam_t(model: nn.Module, clips: Tensor, target: Target, *, layer: nn.Module | str | None = None) -> Explanation:
    head = _TargetLogit(model, target)
    saved: list[Tensor] = []

    def keep_output(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        saved.append(output)
        return output.clone()  # later in-place ops must not touch the saved activation

    handle = resolve_layer(model, layer).register_forward_hook(keep_output)
    try:
        score = head(clips.requires_grad_())  # (B,); a graph to the layer even if the model is frozen
    finally:
        handle.remove()
    (acts,) = saved  # (B, C, T', H', W')
    if acts.ndim != 5:
        raise ValueError(f"gradcam_t needs a layer with 5-D output (B, C, T', H', W'), got {tuple(acts.shape)}")
    (grads,) = torch.autograd.grad(score.sum(), acts)  # clips are independent in eval mode
    weights = grads.mean(dim=(3, 4), keepdim=True)  # (B, C, T', 1, 1)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))  # (B, 1, T', H', W')
    return head.explanation(_upsample(cam.detach(), clips.shape[2:]))


@register_method("guided_backprop")
def _guided_backprop(model: nn.Module, clips: Tensor, target: Target) -> Explanation:
    head = _TargetLogit(model, target)
    with _quiet_captum():
        grads = GuidedBackprop(head).attribute(clips.requires_grad_())  # (B, C, T, H, W)
    return head.explanation(grads.sum(dim=1))


@register_method("guided_gradcam")
def _guided_gradcam(
    model: nn.Module, clips: Tensor, target: Target, *, layer: nn.Module | str | None = None
) -> Explanation:
    head = _TargetLogit(model, target)
    with _quiet_captum():
        attr = GuidedGradCam(head, resolve_layer(model, layer)).attribute(
            clips.requires_grad_(), interpolate_mode="trilinear"
        )  # (B, C, T, H, W)
    if attr.numel() == 0:  # captum returns an empty tensor when it cannot upsample
        raise ValueError("guided_gradcam could not upsample the GradCAM map: the layer needs a 5-D output")
    return head.explanation(attr.sum(dim=1))
