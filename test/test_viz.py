"""Pictures: flow colours and flow grids (OpenCV); training curves, confusion matrices and per-class bars
(matplotlib on the Agg canvas). The charts are checked both as pixels and through their matplotlib figures
(log-scaled loss, legends outside the axes, the run name in every title)."""

import json
import os

import cv2
import numpy as np
import pytest
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_curves_loss_on_log_scale_legend_outside_and_run_name_in_title(tmp_path):
    # An untrained model's first validation loss far above the rest: on a log axis the later points stay readable.
    cols = {"epoch": [1, 2, 3, 4], "train_loss": [2.3, 1.5, 1.0, 0.7], "val_loss": [150.0, 1.8, 1.4, 1.5],
            "train_acc": [0.1, 0.4, 0.7, 0.8], "val_acc": [0.15, 0.3, 0.5, 0.45],
            "test_loss": [float("nan")] * 3 + [1.6], "test_acc": [float("nan")] * 3 + [0.4]}
    fig = viz.curves_figure(cols, run_name="my_run")
    ax_loss, ax_acc = fig.axes
    assert ax_loss.get_yscale() == "log" and ax_acc.get_yscale() == "linear"
    assert "my_run" in fig.get_suptitle()
    # One legend for the figure, outside both axes: no legend inside a panel.
    assert ax_loss.get_legend() is None and ax_acc.get_legend() is None and len(fig.legends) == 1
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:3] == ["train", "validation", "test"] and "best validation (epoch 3)" in texts
    fig.canvas.draw()
    legend_box = fig.legends[0].get_window_extent()
    for ax in (ax_loss, ax_acc):
        assert not legend_box.overlaps(ax.get_window_extent()), "the legend covers the data"
    img = viz.plot_curves(cols, tmp_path / "curves.png", title="my_run")
    assert img.shape[2] == 3 and cv2.imread(str(tmp_path / "curves.png")).shape == img.shape
    assert (tmp_path / "curves.png").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_curves_fall_back_to_linear_loss_axis_for_non_positive_values():
    fig = viz.curves_figure({"epoch": [1, 2], "train_loss": [0.5, 0.0]}, title="run_b")
    assert fig.axes[0].get_yscale() == "linear" and "run_b" in fig.get_suptitle()


def test_confusion_figure_names_classes_and_run(tmp_path):
    labels = ["wave", "walk_left", "walk_right"]
    m = np.array([[5, 1, 0], [0, 4, 2], [0, 1, 6]])
    fig = viz.confusion_figure(m, labels, title="best.pt, 5x1 views", run_name="synthetic")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert "synthetic" in ax.get_title() and "best.pt, 5x1 views" in ax.get_title()
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in m[m > 0])  # counts in the cells
    with pytest.raises(ValueError, match=r"\(3, 3\) does not match 2 labels"):
        viz.plot_confusion(m, labels[:2], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_per_class_bars_from_ablation_results(tmp_path):
    labels = ["wave", "clap", "fall"]
    results = {"none": {"name": "RGB only", "labels": labels, "per_class_accuracy": {"wave": 0.2, "clap": 0.5,
                                                                                   "fall": 0.0}},
               "single": {"name": "Representation flow", "labels": labels,
                          "per_class_accuracy": {"wave": 0.9, "clap": 1.0, "fall": 0.6}}}
    img = viz.plot_per_class(results, tmp_path / "ablation.png", run_name="ablation_run")
    assert cv2.imread(str(tmp_path / "ablation.png")).shape == img.shape
    fig = viz.grouped_bars_figure(labels, {r["name"]: [r["per_class_accuracy"][c] for c in labels]
                                           for r in results.values()}, run_name="ablation_run")
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([20.0, 50.0, 0.0, 90.0, 100.0, 60.0])  # fractions drawn in percent
    assert "ablation_run" in fig.get_suptitle() and ax.get_legend() is None and len(fig.legends) == 1
    results["single"]["per_class_accuracy"].pop("fall")
    with pytest.raises(ValueError, match="'single'.*fall"):
        viz.plot_per_class(results, tmp_path / "bad.png")
