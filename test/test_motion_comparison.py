"""repflow_core.experiments.motion_comparison (issue 13.5): the runner trains, evaluates, times and tabulates.

A tiny budget (a few 24 px clips, 1 epoch) on the motion-only set, two variants in this process: checks the
table, the JSON and the chart it writes, that a rerun reuses the results, and how each variant's config is made
(UF-TSN's stages inside the epoch budget) without training it.
"""

import json
from pathlib import Path

import pytest

from repflow_core.experiments import motion_comparison as mc

CONFIG = str(Path(__file__).resolve().parents[1] / "config" / "train_synthetic_gen1.yaml")

TINY = ["--config", CONFIG, "--sets", "motion", "--variants", "rgb", "flow", "--per-class", "2", "--frames", "6",
        "--render-size", "24",
        "--test-fraction", "0.5", "--cost-rounds", "2", "--cost-frames", "4", "--no-progress", "--set", "epochs=1",
        "data.size=20", "data.resize_short=24", "data.clip_len=4", "data.frame_stride=1", "data.test_clips=1",
        "data.num_workers=0", "data.val_fraction=0", "batch_size=4", "model.iterations=2"]


def test_runner_writes_the_comparison_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert mc.main(["--out", str(out), *TINY]) == 0
    table = (out / "comparison.md").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("| model | motion-only (3 reversed pairs) video top-1 | ms / 16-frame window")
    rows = [ln for ln in lines if ln.startswith("| RGB only") or ln.startswith("| Representation flow")]
    assert len(rows) == 2
    assert "1.0x" in rows[0]  # the cost ratio is relative to RGB only
    assert "6 test videos, chance 17%" in table  # 6 classes x 1 held-out video, honest noise line
    summary = json.loads((out / "comparison.json").read_text())
    assert set(summary["results"]) == {"motion/rgb", "motion/flow"}
    for rec in summary["results"].values():
        assert 0.0 <= rec["video_top1"] <= 1.0 and rec["num_videos"] == 6
        assert set(rec["per_class_accuracy"]) == set(mc.MOTION_ONLY_ACTIONS)
    cost = summary["cost"]
    assert cost["flow"]["params"] > cost["rgb"]["params"] > 0  # the flow block adds parameters
    assert cost["rgb"]["input"] == "4x20x20" and all(c["ms"] > 0 for c in cost.values())
    assert (out / "comparison.png").stat().st_size > 1000
    assert json.loads((out / "data" / "motion" / "data.json").read_text())["actions"] == list(mc.MOTION_ONLY_ACTIONS)

    capsys.readouterr()
    assert mc.main(["--out", str(out), *TINY]) == 0  # same budget: nothing retrained
    assert capsys.readouterr().out.count("reusing") == 2


def test_variant_configs_change_only_their_fields(tmp_path):
    base = dict(config_path=CONFIG, overrides=["epochs=10"], data_root=tmp_path,
                run_dir=tmp_path / "r", num_classes=6)
    rgb = mc.run_config(variant="rgb", **base)
    joint = mc.run_config(variant="flow_joint", **base)
    uftsn = mc.run_config(variant="uftsn", **base)
    assert rgb.model.flow == "none" and joint.model.flow == "single"
    assert joint.loss.photometric == 1.0 and joint.loss.smoothness == 0.1 and rgb.loss.photometric == 0.0
    assert [(s.name, s.epochs) for s in uftsn.stages] == [("flow", 2), ("classifier", 4), ("end_to_end", 4)]
    for cfg in (rgb, joint, uftsn):  # same data, seed and budget
        assert (cfg.data.root, cfg.seed, cfg.epochs, cfg.data.size, cfg.model.width) == (
            str(tmp_path), 0, 10, 56, 0.25)
        assert cfg.model.num_classes == 6
    with pytest.raises(ValueError, match="unknown variant 'tsn'"):
        mc.run_config(variant="tsn", **base)
    with pytest.raises(ValueError, match="epochs >= 3"):
        mc.run_config(variant="uftsn", **{**base, "overrides": ["epochs=2"]})
