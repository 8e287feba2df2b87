"""explain(): every method against captum called directly or a slow reference, the registry, the
targets, and the safety guarantees (hooks, modes, caller's tensors, parameters, grad modes, AMP)."""

from __future__ import annotations

import copy
import importlib
import itertools

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, GuidedGradCam, LayerGradCam
from torch import nn

from lightning_selrel.models.classifier import C3DClassifier
from lightning_selrel.relevance.dtd import dtd
from lightning_selrel.relevance.methods import (
    GRADCAM_FAMILY,
    Explanation,
    available_methods,
    explain,
    explain_with_logits,
    method_options,
    register_method,
    resolve_layer,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations"),
    pytest.mark.usefixtures("one_thread"),  # conftest.py: a tiny model is many times faster on one thread
]

METHODS = ["dtd", "gradcam", "gradcam_t", "guided_backprop", "guided_gradcam"]
CLIP = (16, 32, 32)  # conv5b sees (T', H', W') = (2, 2, 2): GradCAM maps are not constant


def small_classifier(seed: int = 0) -> C3DClassifier:
    torch.manual_seed(seed)
    model = C3DClassifier(num_classes=5, width=4, fc_dim=16, clip_shape=CLIP)
    for module in model.modules():
        if isinstance(module, (nn.Conv3d, nn.Linear)):
            nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5)
            nn.init.uniform_(module.bias, -0.05, 0.05)
    return model


@pytest.fixture(scope="module")
def model() -> C3DClassifier:
    return small_classifier().eval()


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, *CLIP), generator=g, dtype=torch.uint8)


def upsample(cam: torch.Tensor) -> torch.Tensor:
    return F.interpolate(cam, size=CLIP, mode="trilinear", align_corners=False)[:, 0]


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


# -- registry -----------------------------------------------------------------------------------------
def test_available_methods():
    assert set(METHODS) <= set(available_methods())


def test_unknown_method_lists_the_valid_ones(model, clips):
    with pytest.raises(ValueError) as info:
        explain(model, clips, "lrp_magic")
    for name in METHODS:
        assert name in str(info.value)


def test_register_method_and_duplicate(model, clips):
    @register_method("_test_constant")
    def constant(model, clips, target):
        logits = model(clips)
        return Explanation(torch.ones(clips.shape[0], *clips.shape[2:]), logits, logits.argmax(1))

    try:
        assert "_test_constant" in available_methods()
        assert explain(model, clips, "_test_constant").shape == (2, *CLIP)
        with pytest.raises(ValueError, match="already registered"):
            register_method("_test_constant")(constant)
    finally:
        del importlib.import_module("lightning_selrel.relevance.methods")._METHODS["_test_constant"]


# -- shapes, logits, targets -------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_shape_dtype_logits_and_default_target(model, clips, method):
    result = explain_with_logits(model, clips, method)
    assert result.relevance.shape == (2, *CLIP) and result.relevance.dtype == torch.float32
    assert not result.relevance.requires_grad
    with torch.no_grad():
        logits = model.eval()(clips)
    torch.testing.assert_close(result.logits, logits)
    assert torch.equal(result.target, logits.argmax(1))  # target None = the predicted class
    explicit = explain(model, clips, method, target=logits.argmax(1))
    assert_close(result.relevance, explicit)


@pytest.mark.parametrize("method", ["dtd", "gradcam"])
def test_target_forms(model, clips, method):
    as_list = explain(model, clips, method, target=[3, 1])
    assert_close(explain(model, clips, method, target=torch.tensor([3, 1])), as_list)
    assert_close(explain(model, clips, method, target=3)[0], as_list[0])
    other = explain(model, clips, method, target=[0, 1])
    assert not torch.allclose(other[0], as_list[0])  # the target matters
    for bad in ([1, 2, 3], 7, -1, [0.5, 1.0]):
        with pytest.raises(ValueError, match="target"):
            explain(model, clips, method, target=bad)


def test_uint8_and_float_pixels_agree(model, clips):
    for method in ("dtd", "guided_backprop"):
        assert_close(explain(model, clips, method), explain(model, clips.double(), method))


# -- equal to captum called directly / a slow reference ------------------------------------------------
def targets(model, clips) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(clips).argmax(1)


def test_gradcam_equals_captum(model, clips):
    target = targets(model, clips)
    cam = LayerGradCam(model, model.net.conv5b).attribute(clips.float(), target=target, relu_attributions=True)
    assert cam.shape == (2, 1, 2, 2, 2)
    ours = explain(model, clips, "gradcam")
    assert_close(ours, upsample(cam))
    assert ours.min() >= 0 and ours.std() > 0  # ReLU'd, and not a constant map
    assert_close(explain(model, clips, "gradcam", layer="net.conv5b"), ours)
    by_module = explain(model, clips, "gradcam", layer=model.net.conv4b)
    cam4 = LayerGradCam(model, model.net.conv4b).attribute(clips.float(), target=target, relu_attributions=True)
    assert_close(by_module, upsample(cam4))
    with pytest.raises(ValueError, match="conv5b"):
        explain(model, clips, "gradcam", layer="net.conv9")


def test_guided_backprop_equals_captum(model, clips):
    target = targets(model, clips)
    grads = GuidedBackprop(model).attribute(clips.float().requires_grad_(), target=target)
    assert_close(explain(model, clips, "guided_backprop"), grads.sum(dim=1))


def test_guided_backprop_is_the_normalised_gradient_over_std(model, clips):
    """Documented choice: gradients are w.r.t. the pixel clip, i.e. 1/std times the normalised ones."""
    target = targets(model, clips)
    normalised = model.normalize(clips).requires_grad_()
    grads = GuidedBackprop(model.net).attribute(normalised, target=target) / model.normalize.std
    assert_close(explain(model, clips, "guided_backprop"), grads.sum(dim=1))


def test_guided_gradcam_is_guided_backprop_times_gradcam(model, clips):
    ours = explain(model, clips, "guided_gradcam")
    assert_close(ours, explain(model, clips, "guided_backprop") * explain(model, clips, "gradcam"))
    target = targets(model, clips)
    captum = GuidedGradCam(model, model.net.conv5b).attribute(
        clips.float().requires_grad_(), target=target, interpolate_mode="trilinear"
    )
    assert_close(ours, captum.sum(dim=1))


def test_gradcam_t_equals_slow_reference(model, clips):
    """Per clip, time step and channel: weight = mean of the gradient over (H', W'); ReLU of the sum."""
    target = targets(model, clips)
    saved = {}
    handle = model.net.conv5b.register_forward_hook(lambda m, i, o: saved.setdefault("acts", o))
    try:
        logits = model.eval()(clips.float())
    finally:
        handle.remove()
    acts = saved["acts"]
    (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), acts)
    acts, grads = acts.detach().numpy(), grads.numpy()
    batch, channels, steps = acts.shape[:3]
    cam = np.zeros((batch, 1, *acts.shape[2:]))
    for b, t in itertools.product(range(batch), range(steps)):
        total = np.zeros(acts.shape[3:])
        for c in range(channels):
            total += grads[b, c, t].mean() * acts[b, c, t]
        cam[b, 0, t] = np.maximum(total, 0)
    ours = explain(model, clips, "gradcam_t")
    assert_close(ours, upsample(torch.tensor(cam, dtype=torch.float32)))
    assert not torch.allclose(ours, explain(model, clips, "gradcam"))  # not plain GradCAM


def test_dtd_method_is_channel_sum_of_dtd(model, clips):
    relevance, logits, target = dtd(model, clips)
    result = explain_with_logits(model, clips, "dtd", maxpool="winner")
    assert_close(result.relevance, relevance.sum(dim=1))
    torch.testing.assert_close(result.relevance.sum(dim=(1, 2, 3)), torch.ones(len(clips)), rtol=1e-3, atol=0)
    classic = explain(model, clips, "dtd", start="logit")  # the option reaches dtd()
    torch.testing.assert_close(classic.sum(dim=(1, 2, 3)), logits.gather(1, target[:, None])[:, 0], rtol=1e-3, atol=0)
    assert not torch.allclose(explain(model, clips, "dtd", maxpool="proportional"), result.relevance)


# -- safety -------------------------------------------------------------------------------------------
def all_hooks(model: nn.Module) -> list:
    found = []
    for name, module in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(module, kind):
                found.append((name, kind))
    globals_ = nn.modules.module
    for kind in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        if getattr(globals_, kind):
            found.append(("<global>", kind))
    return found


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("method", METHODS)
def test_model_state_and_caller_tensors_untouched(method):
    model = small_classifier().train()
    model.net.drop6.eval()  # a mixed state must come back as it was
    model.net.conv1a.weight.requires_grad_(False)
    model.net.fc8.weight.grad = torch.full_like(model.net.fc8.weight, 7.0)
    before_modes = modes(model)
    before_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    clips = torch.rand(2, 3, *CLIP) * 255
    clips.requires_grad_()
    clips.grad = torch.ones_like(clips)
    original = clips.detach().clone()

    reference = explain(copy.deepcopy(model).eval(), clips.detach(), method)
    assert_close(explain(model, clips, method), reference)  # explained in eval mode (no dropout)

    assert modes(model) == before_modes
    assert all_hooks(model) == []
    assert (
        torch.equal(clips.detach(), original)
        and clips.requires_grad
        and torch.equal(clips.grad, torch.ones_like(clips))
    )
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), before_params[name]), name
        assert param.requires_grad == (name != "net.conv1a.weight"), name
        if name == "net.fc8.weight":
            assert torch.equal(param.grad, torch.full_like(param, 7.0))
        else:
            assert param.grad is None, name


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


@pytest.mark.parametrize("failure", ["raising layer", "shape mismatch"])
@pytest.mark.parametrize("method", METHODS)
def test_no_hooks_and_modes_restored_after_an_exception(method, failure):
    """The forward raises after some layers: in a layer DTD does not know (DTD refuses it before
    running), or in a Linear whose input size is wrong (every method, DTD included, fails mid-forward)."""
    convs = [nn.Conv3d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv3d(2, 2, 3, padding=1), nn.ReLU()]
    if failure == "raising layer":
        model, match = nn.Sequential(*convs, Boom(), nn.Flatten(), nn.Linear(2 * 4 * 4 * 4, 3)), "boom|Boom"
    else:
        model, match = nn.Sequential(*convs, nn.Flatten(), nn.Linear(5, 3)), "shape|size"
    model.train()
    options = {"bounds": (0.0, 1.0)} if method == "dtd" else {}
    with pytest.raises((RuntimeError, TypeError), match=match):
        explain(model, torch.rand(2, 3, 4, 4, 4), method, **options)
    assert all_hooks(model) == []
    assert all(modes(model))


@pytest.mark.parametrize("method", METHODS)
def test_under_no_grad_and_inference_mode(model, clips, method):
    reference = explain(model, clips, method)
    with torch.no_grad():
        assert_close(explain(model, clips, method), reference)
    with torch.inference_mode():
        inference_clips = clips.clone()  # an inference tensor
        inside = explain(model, inference_clips, method)
    assert_close(inside, reference)
    assert_close(explain(model, inference_clips, method), reference)  # inference tensor, normal mode
    assert all_hooks(model) == []


@pytest.mark.parametrize("method", METHODS)
def test_float32_under_autocast(model, clips, method):
    reference = explain(model, clips, method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = explain_with_logits(model, clips, method)
    assert result.relevance.dtype == torch.float32 and result.logits.dtype == torch.float32
    torch.testing.assert_close(result.relevance, reference, rtol=1e-5, atol=1e-6 * reference.abs().max().item())


def test_inside_a_lightning_validation_hook(model, clips):
    """Trainer.validate runs under inference mode: explain must still work there."""
    seen = {}

    class Explainer(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            seen["inference"] = torch.is_inference_mode_enabled()
            seen["relevance"] = {m: explain(pl_module, batch[0], m) for m in ("dtd", "gradcam_t")}

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(clips, torch.tensor([0, 1])), batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[Explainer()],
    )
    trainer.validate(model, data, verbose=False)
    assert seen["inference"]
    for method, relevance in seen["relevance"].items():
        assert_close(relevance, explain(model, clips, method))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(model, clips, method):
    cpu = explain(model, clips, method)
    gpu_model = small_classifier().cuda()
    result = explain(gpu_model, clips.cuda(), method)
    assert result.device.type == "cuda"
    torch.testing.assert_close(result.cpu(), cpu, rtol=1e-3, atol=1e-3 * cpu.abs().max().item())


def test_resolve_layer_errors(model):
    assert resolve_layer(model, None) is model.net.conv5b
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layer(model, nn.Conv3d(1, 1, 1))
    with pytest.raises(ValueError, match="Conv3d"):
        resolve_layer(nn.Sequential(nn.Linear(2, 2)), None)


def test_a_network_declares_its_gradcam_layer():
    resnet = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16), arch="r2plus1d_18")
    assert resolve_layer(resnet, None) is resnet.net.layer4  # the last stage's output, not its last Conv3d
    assert resolve_layer(resnet, "net.layer3") is resnet.net.layer3  # a named layer wins

    class Declared(nn.Module):
        gradcam_layer = "features.1"

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv3d(3, 2, 3), nn.ReLU(), nn.Conv3d(2, 2, 1))

    wrapper = nn.Sequential(Declared())
    assert resolve_layer(wrapper, None) is wrapper[0].features[1]  # relative to the declaring module


@pytest.mark.parametrize("method", METHODS)
def test_a_frozen_model_is_explained_and_stays_frozen(method):
    model = small_classifier()
    model.freeze()
    clips = torch.randint(0, 256, (2, 3, *CLIP), dtype=torch.uint8)
    relevance = explain(model, clips, method)
    assert relevance.shape == (2, *CLIP) and torch.isfinite(relevance).all()
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", ["dtd", "gradcam", "guided_backprop"])
def test_a_bfloat16_model_is_explained_in_its_dtype_with_float32_output(method):
    model = small_classifier()
    clips = torch.randint(0, 256, (2, 3, *CLIP), dtype=torch.uint8)
    reference = explain(model, clips, method)
    relevance = explain(model.to(torch.bfloat16), clips, method)
    assert relevance.dtype == torch.float32
    # bf16 keeps ~3 significant digits: the maps agree where the relevance is large.
    assert torch.corrcoef(torch.stack([relevance.flatten(), reference.flatten()]))[0, 1] > 0.9


def test_method_options_give_the_layer_to_the_gradcam_family_only():
    conv = torch.nn.Conv3d(3, 4, 3)
    for method in available_methods():
        expected = {"layer": "net.conv5b"} if method in GRADCAM_FAMILY else {}
        assert method_options(method, layer="net.conv5b") == expected
        assert method_options(method, layer=conv) == ({"layer": conv} if method in GRADCAM_FAMILY else {})
        assert method_options(method, layer=None) == {} == method_options(method, layer="")


def test_temporal_cells_reads_the_layer_in_eval_mode_and_restores_the_model():
    from lightning_selrel.relevance.methods import temporal_cells

    model = C3DClassifier(num_classes=3, width=4, fc_dim=8, clip_shape=(16, 16, 16), arch="r3d_18").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clip = torch.zeros(3, 16, 16, 16, dtype=torch.uint8)
    assert temporal_cells(model, clip) == 2 and temporal_cells(model, clip, "net.layer2") == 8
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
