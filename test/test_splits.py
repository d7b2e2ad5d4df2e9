"""Validation split (issue 14.1): stratified, grouped, deterministic, disjoint from test; selection uses it."""

from pathlib import Path

import pytest

from repflow_core.data.layouts import DatasetError, VideoSample
from repflow_core.data.splits import carve_validation, check_disjoint, group_of


def ucf_samples(classes=("Jump", "Wave", "Clap"), groups=8, clips=3):
    return [VideoSample(Path(f"/d/{c}/v_{c}_g{g:02d}_c{k:02d}.avi"), ci)
            for ci, c in enumerate(classes) for g in range(1, groups + 1) for k in range(1, clips + 1)]


def test_group_rules():
    assert group_of("/x/v_Jump_g08_c03.avi") == "g08"
    assert group_of("/x/wave_0003.avi") == "wave_0003"  # synthetic: one seed per file
    assert group_of("/x/kitchen_run7_02.mp4", r"^(.*)_\d+$") == "kitchen_run7"


def test_stratified_grouped_deterministic():
    samples = ucf_samples()
    classes = ["Jump", "Wave", "Clap"]
    a = carve_validation(samples, classes, 0.25, seed=1)
    b = carve_validation(list(reversed(samples)), classes, 0.25, seed=1)
    assert sorted(map(str, (s.path for s in a.val))) == sorted(map(str, (s.path for s in b.val)))  # order-free
    assert len(a.train) + len(a.val) == len(samples) and not {s.path for s in a.train} & {s.path for s in a.val}
    for ci in range(len(classes)):  # every class held out ~25% (whole groups of 3 clips: 6 of 24)
        assert sum(s.label == ci for s in a.val) == 6
    train_groups = {(s.label, group_of(s.path)) for s in a.train}
    assert not train_groups & {(s.label, group_of(s.path)) for s in a.val}  # no group straddles
    c = carve_validation(samples, classes, 0.25, seed=2)
    assert {s.path for s in c.val} != {s.path for s in a.val}  # the seed matters
    assert carve_validation(samples, classes, 0.0, seed=1).val == []


def test_single_group_class_stays_in_training_and_test_overlap_is_refused():
    samples = ucf_samples(groups=1)
    split = carve_validation(samples, ["Jump", "Wave", "Clap"], 0.5, seed=0)
    assert split.val == [] and len(split.unsplit_classes) == 3
    split = carve_validation(ucf_samples(), ["Jump", "Wave", "Clap"], 0.2, seed=0)
    check_disjoint(split.val, ucf_samples(classes=("Other",)))
    with pytest.raises(DatasetError, match="also in the test split"):
        check_disjoint(split.val, split.val[:1])
    with pytest.raises(DatasetError, match="val_fraction"):
        carve_validation(samples, ["Jump"], 1.0, seed=0)
