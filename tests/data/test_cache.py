"""The frame cache: the same clips as decoding, reuse, rebuilds, interrupted entries, the command."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from ucf_fixture import (
    RESIZE,
    make_dm,
    noise_video,
    quiet_setup,
    write_ucf_tree,
    write_video,
)

from lightning_selrel.commands.cache import main
from lightning_selrel.data.cache import build_cache, cache_entry
from lightning_selrel.data.frames import decode_video


def test_cache_gives_the_same_clips_as_decoding(ucf_tree, tmp_path):
    direct = quiet_setup(make_dm(ucf_tree.root))
    cached = quiet_setup(make_dm(ucf_tree.root, cache_dir=str(tmp_path / "cache")))
    assert cached.skipped == direct.skipped == {str(ucf_tree.corrupt): cached.skipped[str(ucf_tree.corrupt)]}
    for split in ("train", "val"):
        a = getattr(direct, f"{split}_dataloader")().dataset
        b = getattr(cached, f"{split}_dataloader")().dataset
        assert [v.frames for v in a.videos] == [v.frames for v in b.videos]
        assert all(v.cache is None for v in a.videos) and all(v.cache.is_file() for v in b.videos)
        for index in range(len(a)):
            random.seed(index)  # the same window, crop and flip in both
            clip_a, label_a = a[index]
            random.seed(index)
            clip_b, label_b = b[index]
            assert label_a == label_b
            torch.testing.assert_close(clip_a, clip_b, rtol=0, atol=0)


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path):
    tree = write_ucf_tree(tmp_path)
    cache = tmp_path / "cache"
    first = build_cache(tree.root, cache, RESIZE, workers=1)
    assert (first.built, first.reused, list(first.failed)) == (9, 0, [str(tree.corrupt)])
    entry = cache_entry(cache, Path("YoYo/v_YoYo_g02_c01.avi"), RESIZE)
    assert json.loads(entry.sidecar.read_text())["frames"] == 0 and not entry.array.exists()

    second = build_cache(tree.root, cache, RESIZE, workers=1)
    assert (second.built, second.reused) == (0, 9)  # the corrupt file is not decoded again

    changed = tree.root / "YoYo" / "v_YoYo_g01_c01.avi"
    write_video(changed, noise_video(30, (32, 40), seed=1234))
    os.utime(changed, ns=(1, 1))  # a new mtime even on coarse file systems
    third = build_cache(tree.root, cache, RESIZE, workers=1)
    assert (third.built, third.reused) == (1, 8)
    np.testing.assert_array_equal(
        np.load(cache_entry(cache, changed.relative_to(tree.root), RESIZE).array), decode_video(changed, RESIZE)
    )
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_interrupted_entry_is_rebuilt(tmp_path):
    tree = write_ucf_tree(tmp_path)
    cache = tmp_path / "cache"
    build_cache(tree.root, cache, RESIZE, workers=1)
    entry = cache_entry(cache, Path("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"), RESIZE)
    entry.sidecar.unlink()  # as if killed after the array was written and before the sidecar
    assert build_cache(tree.root, cache, RESIZE, workers=1).built == 1
    assert json.loads(entry.sidecar.read_text())["frames"] == tree.frames


def test_cache_command_line(tmp_path, capsys):
    tree = write_ucf_tree(tmp_path)
    args = ["--root", str(tree.root), "--cache-dir", str(tmp_path / "cache"), "--resize", "20", "24"]
    assert main(args) == 0
    assert (
        "9 videos decoded (0 of them damaged in the cache), 0 already cached, 1 unreadable" in capsys.readouterr().out
    )
    main(args)
    assert "0 videos decoded (0 of them damaged in the cache), 9 already cached" in capsys.readouterr().out
    assert (tmp_path / "cache" / "20x24" / "YoYo" / "v_YoYo_g01_c01.npy").is_file()


def test_cache_command_line_names_bad_options_in_one_line_and_writes_nothing(tmp_path, capsys):
    tree = write_ucf_tree(tmp_path / "tree")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    root, cache = str(tree.root), str(tmp_path / "cache")
    cases = {
        "--root missing: no such folder": ["--root", "missing", "--cache-dir", cache],
        f"--root {a_file}: is a file, not folder": ["--root", str(a_file), "--cache-dir", cache],
        "--workers 0: must be at least 1": ["--root", root, "--cache-dir", cache, "--workers", "0"],
        "--workers -1: must be at least 1": ["--root", root, "--cache-dir", cache, "--workers", "-1"],
        "--resize 0 0: H and W must be positive": ["--root", root, "--cache-dir", cache, "--resize", "0", "0"],
        f"--cache-dir {a_file} is a file, not a folder": ["--root", root, "--cache-dir", str(a_file)],
        "cannot be written": ["--root", root, "--cache-dir", "/proc/selrel_cache"],
    }
    for message, args in cases.items():
        assert main(args) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("cache: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "cache").exists()  # nothing written, no 0x0/<class> folders


def test_a_damaged_entry_is_found_decoded_again_and_counted(tmp_path, capsys):
    """A truncated .npy and an overwritten header are found by every build (a header read and a stat); random
    bytes that keep the size only by --verify's checksum. Each is decoded again from its source, never trained on."""
    tree = write_ucf_tree(tmp_path)
    cache = tmp_path / "cache"
    build_cache(tree.root, cache, RESIZE, workers=1)
    names = sorted(p.relative_to(tree.root) for p in tree.root.rglob("*.avi") if p != tree.corrupt)[:3]
    truncated, header, scribbled = (cache_entry(cache, name, RESIZE) for name in names)
    good = {entry: np.load(entry.array).copy() for entry in (truncated, header, scribbled)}
    data = truncated.array.read_bytes()
    truncated.array.write_bytes(data[: len(data) // 2])
    data = bytearray(header.array.read_bytes())
    data[10:40] = b"{'descr': '|u1', 'shape': (3,"  # the shape in the header overwritten
    header.array.write_bytes(bytes(data))
    data = bytearray(scribbled.array.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = os.urandom(2000)  # same size, other frames
    scribbled.array.write_bytes(bytes(data))

    summary = build_cache(tree.root, cache, RESIZE, workers=1)
    assert summary.built == 2 and set(summary.damaged) == {str(tree.root / n) for n in names[:2]}
    assert (
        "does not read" in summary.damaged[str(tree.root / names[1])]
        or "holds" in summary.damaged[str(tree.root / names[1])]
    )
    assert (
        "bytes" in summary.damaged[str(tree.root / names[0])]
        or "does not read" in summary.damaged[str(tree.root / names[0])]
    )
    for entry in (truncated, header):
        assert np.array_equal(np.load(entry.array), good[entry])
    assert not np.array_equal(np.load(scribbled.array), good[scribbled])  # same size: only the checksum tells

    args = ["--root", str(tree.root), "--cache-dir", str(cache), "--resize", str(RESIZE[0]), str(RESIZE[1])]
    assert main([*args, "--verify"]) == 0
    out = capsys.readouterr()
    assert "1 videos decoded (1 of them damaged in the cache)" in out.out and "and verified" in out.out
    assert np.array_equal(np.load(scribbled.array), good[scribbled])
    assert main([*args, "--verify"]) == 0
    assert "0 videos decoded (0 of them damaged in the cache)" in capsys.readouterr().out
