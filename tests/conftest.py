"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch
from torchvision_import import declare_missing_detection_ops

declare_missing_detection_ops()  # before anything imports torchmetrics, which imports torchvision when installed


@pytest.fixture
def one_thread():
    """Tiny models: OpenMP synchronisation dominates, and one thread is many times faster on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory):
    """A tiny UCF-101-shaped tree of real .avi files (tests/ucf_fixture.py), written once per test module."""
    from ucf_fixture import write_ucf_tree

    return write_ucf_tree(tmp_path_factory.mktemp("ucf"))
