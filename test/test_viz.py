"""OpenCV drawings: flow colours, flow grids, training curves, confusion matrices."""

import json

import cv2
import numpy as np
import torch

from repflow_core import viz


def _hue(rgb: np.ndarray) -> float:
    return float(cv2.cvtColor(rgb.reshape(1, 1, 3), cv2.COLOR_RGB2HSV)[0, 0, 0])


def test_flow_to_color_direction_sets_hue_and_magnitude_sets_strength():
    ones, zeros = np.ones((4, 5)), np.zeros((4, 5))
    right = viz.flow_to_color(ones, zeros)
    left = viz.flow_to_color(-ones, zeros)
    down = viz.flow_to_color(zeros, ones)
    assert right.shape == (4, 5, 3) and right.dtype == np.uint8
    hues = [_hue(right[0, 0]), _hue(left[0, 0]), _hue(down[0, 0])]
    assert abs(hues[0] - hues[1]) > 45 and abs(hues[0] - hues[2]) > 15  # OpenCV hue is 0..180
    # Middlebury: no motion is white; HSV style: no motion is black, full motion at full value.
    field = np.stack([np.linspace(0, 1, 5)] * 4)
    mid = viz.flow_to_color(field, zeros)
    assert (mid[0, 0] == 255).all() and mid[0, -1].min() < 50
    hsv = viz.flow_to_color(torch.tensor(field), torch.zeros(4, 5), style="hsv")
    assert hsv[0, 0].max() == 0 and hsv[0, -1].max() == 255


def test_flow_grid_image_tiles_channels():
    rng = np.random.default_rng(0)
    flows = rng.normal(size=(2 * 6, 7, 7)).astype(np.float32)
    grid = viz.flow_grid_image(flows, cell=32, pad=2)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    # 6 channels + the colour key = 7 tiles -> 3 x 3 grid of 32 px cells with 2 px gaps.
    assert grid.shape[:2] == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2)
    assert grid.std() > 20


def test_plot_curves_from_csv(tmp_path):
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("epoch,train_loss,val_loss,train_acc,val_acc\n1,2.3,2.2,0.1,0.15\n"
                        "2,1.5,1.8,0.4,0.3\n3,1.0,1.6,0.7,\n")
    img = viz.plot_curves(csv_path, tmp_path / "curves.png")
    png = cv2.imread(str(tmp_path / "curves.png"))
    assert png is not None and png.shape == img.shape and img.shape[2] == 3
    # The coloured curves are drawn (not only black/grey axes on white).
    assert (np.abs(img.astype(int) - img.mean(2, keepdims=True)).max(2) > 40).sum() > 200


def test_plot_confusion_writes_png_and_row_normalised_json(tmp_path):
    m = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    img = viz.plot_confusion(m, ["a", "b", "c"], tmp_path / "c.png", json_path=tmp_path / "c.json")
    assert img.dtype == np.uint8 and cv2.imread(str(tmp_path / "c.png")) is not None
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["matrix"] == m.tolist()
    assert np.allclose(data["row_normalised"][0], [0.8, 0.2, 0.0]) and data["row_normalised"][2] == [0, 0, 0]
    assert abs(data["mean_class_accuracy"] - (0.8 + 0.75) / 2) < 1e-9
    assert img.min() < 60  # dark cells for the high fractions
