"""Multi-view evaluation: metrics, files, and a label mismatch between checkpoint and dataset."""

import csv
import json

import cv2
import pytest
import torch

from repflow_core.checkpoint import Checkpoint, InputSpec, save_checkpoint
from repflow_core.config import TrainConfig, apply_overrides, dump_yaml
from repflow_core.data.synthetic import ACTIONS, write_dataset
from repflow_core.evaluate import LabelMismatchError, evaluate_checkpoint, main
from repflow_core.model import ActionNet, ModelConfig


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    root = tmp / "data"
    write_dataset(root, per_class=2, num_frames=12, size=48, fps=15, seed=1, test_fraction=0.5, progress=False)
    cfg = apply_overrides(TrainConfig(), {"data.root": str(root), "data.num_workers": "0",
                                          "data.clip_len": "16", "data.size": "112"})
    mc = ModelConfig(backbone="resnet18", width=0.125, num_classes=len(ACTIONS), flow="single",
                     flow_after="layer1", flow_channels=4, iterations=2, dropout=0.0)
    torch.manual_seed(0)
    spec = InputSpec(clip_len=8, frame_stride=1, size=(32, 32), resize_short=36)
    save_checkpoint(Checkpoint(mc, list(ACTIONS), spec, ActionNet(mc).state_dict()), tmp / "model.pt")
    wrong = list(ACTIONS[:-1]) + ["somersault"]
    save_checkpoint(Checkpoint(mc, wrong, spec, ActionNet(mc).state_dict()), tmp / "wrong.pt")
    return tmp, cfg


def test_evaluate_writes_metrics_predictions_and_confusion(setup):
    tmp, cfg = setup
    out = tmp / "eval"
    m = evaluate_checkpoint(tmp / "model.pt", cfg.data, clips=2, crops=3, device="cpu", out_dir=out,
                            progress=False, log=lambda s: None)
    for key in ("clip_top1", "video_top1", "video_top5", "mean_class_accuracy"):
        assert 0.0 <= m[key] <= 1.0
    assert m["num_videos"] == 10 and m["views_per_video"] == 6 and m["video_top5"] >= m["video_top1"]
    # The checkpoint's input spec wins over the config file's clip length and size.
    assert m["input_spec"]["clip_len"] == 8 and m["input_spec"]["size"] == [32, 32]
    saved = json.loads((out / "metrics.json").read_text())
    assert {"clip_top1", "video_top1", "video_top5", "mean_class_accuracy", "confusion",
            "per_class_accuracy"} <= set(saved)
    assert sum(map(sum, saved["confusion"])) == 10
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 10 and set(rows[0]) == {"path", "label", "predicted", "score", "top5"}
    assert len(rows[0]["top5"].split()) == 5
    assert cv2.imread(str(out / "confusion.png")) is not None


def test_cli_and_label_mismatch(setup, capsys):
    tmp, cfg = setup
    dump_yaml(cfg, tmp / "cfg.yaml")
    code = main(["--checkpoint", str(tmp / "model.pt"), "--config", str(tmp / "cfg.yaml"), "--clips", "1",
                 "--device", "cpu", "--out", str(tmp / "cli"), "--no-progress"])
    assert code == 0 and (tmp / "cli" / "metrics.json").is_file()
    with pytest.raises(LabelMismatchError, match=r"somersault.*put_down"):
        evaluate_checkpoint(tmp / "wrong.pt", cfg.data, clips=1, device="cpu", write_files=False, progress=False)
    code = main(["--checkpoint", str(tmp / "wrong.pt"), "--config", str(tmp / "cfg.yaml"), "--device", "cpu",
                 "--no-progress"])
    assert code == 2 and "do not match" in capsys.readouterr().err
