"""The flow-quality suite's UF-TSN entry (issue 13 part 4): the estimator is trained without flow labels on
texture pairs disjoint from the evaluation pair, its half-resolution flow is compared at full resolution, and
the bench reports it beside the other methods."""

import json
import math
import time

import numpy as np
import pytest

from repflow_core import bench, flow_quality


def test_training_pairs_are_not_the_evaluation_pairs():
    img1, _, _ = flow_quality.known_motion_pair("mixed", 48)
    rng = np.random.default_rng(0)
    a, b, flow = flow_quality.random_motion_pair(48, rng, flow_quality.UFTSN_TRAIN_SEED)
    assert a.shape == b.shape == (48, 48) and flow.shape == (2, 48, 48)
    assert not np.allclose(a, img1)  # another texture
    assert np.abs(flow).max() > 0.5  # a real motion


def test_uftsn_flow_is_full_resolution_in_full_resolution_pixels():
    est = flow_quality.train_uftsn_estimator(steps=1, size=32, batch=2, log=lambda _: None)
    img1, img2, truth = flow_quality.known_motion_pair("translation", 64)
    half = est(flow_quality._uftsn_input(img1), flow_quality._uftsn_input(img2))[0].detach()
    full = flow_quality.uftsn_method(est)(img1, img2)
    assert half.shape[-2:] == (32, 32) and full.shape == truth.shape
    # x2 in value: the mean flow doubles with the upsampling
    assert full.mean(axis=(1, 2)) == pytest.approx(2 * half[0].mean(dim=(1, 2)).numpy(), rel=1e-3, abs=1e-4)
    with pytest.raises(ValueError, match="steps"):
        flow_quality.train_uftsn_estimator(steps=0)


def test_bench_reports_the_uftsn_entry_quickly(tmp_path):
    out = tmp_path / "fq.json"
    start = time.perf_counter()
    assert bench.main(["--suite", "flow-quality", "--sizes", "48", "--motions", "mixed", "--iterations", "5",
                       "--levels", "1", "--gradients", "sobel_fd", "--repeats", "1", "--uftsn-steps", "3",
                       "--out", str(out)]) == 0
    assert time.perf_counter() - start < 30
    rows = {r["method"]: r for r in json.loads(out.read_text())}
    row = rows["UF-TSN estimator (unsupervised)"]
    assert math.isfinite(row["epe"]) and row["epe"] >= 0 and row["ms_per_pair"] > 0
    assert "layer sobel_fd, 5 it." in rows  # beside the other methods
