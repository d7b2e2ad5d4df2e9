"""Atomic writes with the usual umask-respecting file mode (issue 11 item 8: best.pt/last.pt were 0600)."""

import os
import pickle
import stat
from contextlib import contextmanager

import pytest
import torch

from repflow_core.atomic_io import (
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    default_file_mode,
)
from repflow_core.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
from repflow_core.config import TrainConfig, dump_yaml
from repflow_core.model import ActionNet, ModelConfig


@contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_open_would_give_them(tmp_path, mask, expected):
    with umask(mask):
        assert default_file_mode() == expected
        atomic_write_bytes(tmp_path / "a.bin", b"abc")
        atomic_write_text(tmp_path / "sub" / "b.txt", "héllo")
        atomic_torch_save({"x": torch.ones(2)}, tmp_path / "c.pt")
        with open(tmp_path / "plain.txt", "w") as fh:  # what a plain write gives, for comparison
            fh.write("x")
    for name in ("a.bin", "sub/b.txt", "c.pt", "plain.txt"):
        assert mode_of(tmp_path / name) == expected, name
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["x"], torch.ones(2))


def test_explicit_mode(tmp_path):
    with umask(0o022):
        atomic_write_bytes(tmp_path / "secret", b"k", mode=0o600)
    assert mode_of(tmp_path / "secret") == 0o600


def test_checkpoints_and_configs_are_readable_by_other_users(tmp_path):
    cfg = ModelConfig(width=0.125, num_classes=2, flow_channels=4, iterations=1, flow_after="layer1", dropout=0.0)
    ckpt = Checkpoint(cfg, ["a", "b"], InputSpec(clip_len=4, size=(32, 32), resize_short=40),
                      ActionNet(cfg).state_dict())
    with umask(0o022):
        save_checkpoint(ckpt, tmp_path / "run" / "best.pt")
        save_checkpoint(ckpt, tmp_path / "run" / "last.pt")
        save_checkpoint(ckpt, tmp_path / "run" / "best.pt")  # replacing keeps the ordinary mode
        dump_yaml(TrainConfig(), tmp_path / "run" / "config.yaml")
    for name in ("best.pt", "last.pt", "config.yaml"):
        assert mode_of(tmp_path / "run" / name) == 0o644, name
    assert sorted(os.listdir(tmp_path / "run")) == ["best.pt", "config.yaml", "last.pt"]
    assert load_checkpoint(tmp_path / "run" / "best.pt").labels == ["a", "b"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def half_then_fail(fh):
        fh.write(b"new but incomplete")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
    with pytest.raises((pickle.PicklingError, AttributeError)):
        atomic_torch_save({"f": lambda: 0}, target)  # a lambda cannot be pickled
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
