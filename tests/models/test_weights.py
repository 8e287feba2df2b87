"""Loading public C3D checkpoints in their three namings (and ours) into a small C3D."""

from __future__ import annotations

import pytest
import torch

from lightning_selrel.models.c3d import C3D
from lightning_selrel.models.classifier import C3DClassifier
from lightning_selrel.models.weights import load_c3d_weights

SMALL = dict(width=4, fc_dim=16, clip_shape=(16, 16, 16))
CONVS = ["conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"]
LINEARS = ["fc6", "fc7", "fc8"]

# Written out by hand, as the public files name them: the reference the loader must agree with.
SPORTS1M = {**{name: name for name in CONVS + LINEARS}, "conv1a": "conv1", "conv2a": "conv2"}
SEQUENTIAL = {  # indices of an nn.Sequential with ReLU and pooling layers in between
    "conv1a": "features.0", "conv2a": "features.3", "conv3a": "features.6", "conv3b": "features.8",
    "conv4a": "features.11", "conv4b": "features.13", "conv5a": "features.16", "conv5b": "features.18",
    "fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6",
}  # fmt: skip
MMACTION2 = {
    **{name: f"backbone.{name}.conv" for name in CONVS},
    "fc6": "backbone.fc6",
    "fc7": "backbone.fc7",
    "fc8": "cls_head.fc_cls",
}


class NotATensor:
    """A custom object: torch.load(weights_only=True) must refuse to unpickle it."""


def source_net(num_classes: int = 5, seed: int = 1, **overrides) -> C3D:
    torch.manual_seed(seed)
    net = C3D(num_classes=num_classes, **{**SMALL, **overrides})
    for parameter in net.parameters():  # distinct values everywhere, biases included
        torch.nn.init.normal_(parameter)
    return net


def renamed(net: C3D, names: dict[str, str], layers=CONVS + LINEARS, prefix: str = "") -> dict[str, torch.Tensor]:
    return {
        f"{prefix}{names[layer]}.{kind}": getattr(net.get_submodule(layer), kind).detach().clone()
        for layer in layers
        for kind in ("weight", "bias")
    }


def assert_layers_equal(a: C3D, b: C3D, layers) -> None:
    for layer in layers:
        for kind in ("weight", "bias"):
            torch.testing.assert_close(getattr(a.get_submodule(layer), kind), getattr(b.get_submodule(layer), kind))


@pytest.mark.parametrize(
    "naming, names, wrap",
    [
        ("c3d-sports1m", SPORTS1M, lambda sd: sd),
        ("sequential", SEQUENTIAL, lambda sd: {"model": sd}),
        ("mmaction2", MMACTION2, lambda sd: {"meta": {"epoch": 45, "config": "..."}, "state_dict": sd}),
    ],
)
def test_each_public_naming_loads_every_tensor(tmp_path, naming, names, wrap):
    source = source_net()
    path = tmp_path / "c3d.pth"
    torch.save(wrap(renamed(source, names)), path)
    target = C3D(num_classes=5, **SMALL)
    report = load_c3d_weights(target, path)
    assert report.naming == naming and report.head == "loaded" and len(report.loaded) == 22
    assert_layers_equal(source, target, CONVS + LINEARS)
    assert f"22 tensors loaded, naming {naming!r}, head loaded" in str(report)


def test_module_prefix_and_nested_wrappers(tmp_path):
    source = source_net()
    path = tmp_path / "dataparallel.pth"
    torch.save({"epoch": 3, "state_dict": renamed(source, SPORTS1M, prefix="module.")}, path)
    target = C3D(num_classes=5, **SMALL)
    assert load_c3d_weights(target, path).naming == "c3d-sports1m"
    assert_layers_equal(source, target, CONVS + LINEARS)


def test_head_is_reinitialised_when_the_class_count_differs(tmp_path):
    source = source_net(num_classes=487)  # the Sports-1M head
    path = tmp_path / "sports1m.pickle"
    torch.save(renamed(source, SPORTS1M), path)
    target = C3D(num_classes=5, **SMALL)
    report = load_c3d_weights(target, path)
    assert report.head == "the checkpoint has 487 classes, the network 5" and len(report.loaded) == 20
    assert_layers_equal(source, target, CONVS + ["fc6", "fc7"])
    assert target.fc8.weight.shape == (5, 16) and target.fc8.weight.std() < 0.05 and not target.fc8.bias.any()
    with pytest.raises(ValueError, match="cannot load the head: the checkpoint has 487 classes"):
        load_c3d_weights(C3D(num_classes=5, **SMALL), path, strict_head=True)


def test_mmaction2_backbone_file_without_head(tmp_path):
    source = source_net()
    names = {layer: prefix.removeprefix("backbone.") for layer, prefix in MMACTION2.items()}
    path = tmp_path / "c3d_sports1m_pretrain.pth"
    torch.save({"state_dict": renamed(source, names, layers=CONVS + ["fc6", "fc7"])}, path)
    target = C3D(num_classes=5, **SMALL)
    report = load_c3d_weights(target, path)
    assert report.naming == "mmaction2" and report.head == "the checkpoint has no cls_head.fc_cls"
    assert_layers_equal(source, target, CONVS + ["fc6", "fc7"])


def test_our_own_classifier_checkpoint_loads(tmp_path):
    model = C3DClassifier(num_classes=5, **SMALL)
    path = tmp_path / "run.ckpt"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, path)
    target = C3D(num_classes=5, **SMALL)
    assert load_c3d_weights(target, path).naming == "lightning"
    assert_layers_equal(model.net, target, CONVS + LINEARS)


def test_unknown_naming_fails_listing_the_missing_keys(tmp_path):
    path = tmp_path / "other.pth"
    state = renamed(source_net(), SPORTS1M)
    del state["conv5b.weight"], state["conv5b.bias"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"other.pth matches none.*closest, 'c3d-sports1m', misses "
                       r"\['conv5b.weight', 'conv5b.bias'\]"):  # fmt: skip
        load_c3d_weights(C3D(num_classes=5, **SMALL), path)
    torch.save({"layer1.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match=r"matches none of the known C3D namings.*first keys: \['layer1.weight'\]"):
        load_c3d_weights(C3D(num_classes=5, **SMALL), path)


def test_shape_mismatch_names_the_layer_and_the_fix(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(renamed(source_net(width=8), SPORTS1M), path)
    with pytest.raises(ValueError, match=r"conv1.weight has shape \(8, 3, 3, 3, 3\).*conv1a.weight has .*width"):
        load_c3d_weights(C3D(num_classes=5, **SMALL), path)
    torch.save(renamed(source_net(clip_shape=(16, 32, 32)), SPORTS1M), path)
    with pytest.raises(ValueError, match=r"fc6.weight has shape \(16, 128\).*32 x 1 x 1 x 1 inputs .*8192"):
        load_c3d_weights(C3D(num_classes=5, **SMALL), path)


def test_missing_file_and_unsafe_pickle_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"C3D checkpoint .*absent.pth not found"):
        load_c3d_weights(C3D(num_classes=5, **SMALL), tmp_path / "absent.pth")
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": renamed(source_net(), SPORTS1M), "extra": NotATensor()}, path)
    with pytest.raises(
        ValueError, match=r"cannot read .*pickled.pth with torch.load\(weights_only=True\) \(Unsupported global"
    ):
        load_c3d_weights(C3D(num_classes=5, **SMALL), path)


def test_standard_c3d_takes_the_sports1m_fc6():
    with torch.device("meta"):
        net = C3D(num_classes=487)
    assert net.fc6.in_features == 8192 == 512 * 1 * 4 * 4


def test_classifier_pretrained_loads_and_is_not_needed_by_load_from_checkpoint(tmp_path):
    source = source_net(num_classes=487)
    weights = tmp_path / "sports1m.pth"
    torch.save(renamed(source, SPORTS1M), weights)
    model = C3DClassifier(num_classes=3, pretrained=str(weights), **SMALL)
    assert_layers_equal(source, model.net, CONVS + ["fc6", "fc7"])
    assert "pretrained" not in model.hparams
    checkpoint = tmp_path / "run.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": "2.6.0",
        },
        checkpoint,
    )
    weights.unlink()  # the run's checkpoint must not need the pre-training file
    restored = C3DClassifier.load_from_checkpoint(checkpoint)
    assert_layers_equal(model.net, restored.net, CONVS + LINEARS)


def test_matching_weights_load_into_a_residual_network_and_a_new_head(tmp_path):
    from lightning_selrel.models.resnet3d import R3D18
    from lightning_selrel.models.weights import load_matching_weights

    torch.manual_seed(0)
    source = R3D18(num_classes=400, width=4)
    path = tmp_path / "r3d.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    same, other = R3D18(num_classes=400, width=4), R3D18(num_classes=7, width=4)
    assert load_matching_weights(same, path).head == "loaded"
    for key, value in source.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    report = load_matching_weights(other, path)
    assert "another shape" in report.head and torch.equal(
        other.layer4[1].conv2[0].weight, source.layer4[1].conv2[0].weight
    )
    with pytest.raises(ValueError, match=r"stem.0.weight has shape \(4, 3, 3, 7, 7\) but this network's has \(8,"):
        load_matching_weights(R3D18(num_classes=7, width=8), path)
    from lightning_selrel.models.resnet3d import R2Plus1D18

    with pytest.raises(ValueError, match="lacks .* of this network's tensors"):
        load_matching_weights(R2Plus1D18(num_classes=7, width=4), path)
