"""The flow-quality suite (repflow_core.flow_quality): its known-motion pairs are what they claim, EPE is
measured as documented, and ``python -m repflow_core.bench --suite flow-quality`` writes its table."""

import json

import cv2
import numpy as np
import pytest

from repflow_core import bench, flow_quality


@pytest.mark.parametrize("motion", flow_quality.MOTIONS)
def test_pairs_are_related_by_their_true_flow(motion):
    """Warping the second image back by the true flow gives the first image (away from the border)."""
    img1, img2, flow = flow_quality.known_motion_pair(motion, 64, seed=3)
    assert img1.shape == img2.shape == (64, 64) and flow.shape == (2, 64, 64)
    assert 0 <= img1.min() and img1.max() <= 255 and img1.std() > 20
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    b = flow_quality.BORDER

    def residual(f):
        back = cv2.remap(img2, xs + f[0], ys + f[1], cv2.INTER_CUBIC)
        return np.abs(back - img1)[b:-b, b:-b].mean()

    # two cubic interpolations of the finest texture octave leave a small residual; a wrong flow a large one
    assert residual(flow) < 0.3 * residual(np.zeros_like(flow)) and residual(flow) < 0.3 * residual(-flow)
    assert np.abs(img2 - img1)[b:-b, b:-b].mean() > 2  # the motion is real


def test_translation_flow_is_uniform_and_positive_x_is_rightwards():
    _, _, flow = flow_quality.known_motion_pair("translation", 112)
    assert np.allclose(flow[0], 1.5) and np.allclose(flow[1], 0.5)


def test_epe_ignores_the_border_and_names_shape_mismatches():
    truth = np.zeros((2, 32, 32), np.float32)
    flow = truth.copy()
    flow[:, :8] = 100.0  # only border pixels are wrong
    assert flow_quality.epe(flow, truth) == 0.0
    flow[0, 16, 16] = 3.0
    assert flow_quality.epe(flow, truth) == pytest.approx(3.0 / 16**2)
    with pytest.raises(ValueError, match="shape"):
        flow_quality.epe(flow[:, :10], truth)
    with pytest.raises(ValueError, match="unknown motion"):
        flow_quality.known_motion_pair("spin", 32)


def test_opencv_anchors_recover_the_motion():
    img1, img2, truth = flow_quality.known_motion_pair("mixed", 112)
    assert flow_quality.epe(flow_quality.dis_medium(img1, img2), truth) < 0.3
    assert flow_quality.epe(flow_quality.farneback(img1, img2), truth) < 0.3


def test_bench_suite_writes_rows_for_every_method(tmp_path, capsys):
    out = tmp_path / "fq.json"
    picture = tmp_path / "fq.png"
    assert bench.main(["--suite", "flow-quality", "--sizes", "48", "--motions", "mixed", "--iterations", "5",
                       "--levels", "1", "2", "--gradients", "sobel_fd", "--repeats", "1", "--uftsn-steps", "0",
                       "--out", str(out), "--picture", str(picture)]) == 0
    rows = json.loads(out.read_text())
    methods = {r["method"] for r in rows}
    expected = {"OpenCV Farneback", "OpenCV DIS (medium)", "layer sobel_fd, 5 it.", "layer sobel_fd, 5 it., 2 levels"}
    assert expected <= methods
    assert all(r["epe"] >= 0 and r["ms_per_pair"] > 0 and r["size"] == 48 for r in rows)
    assert "| layer sobel_fd, 5 it." in capsys.readouterr().out
    assert cv2.imread(str(picture)).shape[0] > 48
