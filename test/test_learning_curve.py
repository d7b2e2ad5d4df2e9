"""The learning-curve experiment's bookkeeping (issue 10.3): merging the runs of a second process (--merge), the
README table, the docs files (the recipe checks kept in learning_curve.json) and --data-seed. No training here:
the curve itself takes minutes per run (README "Learning curve")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from repflow_core.experiments.learning_curve import make_data, merge_results, table, write_docs


def _run(arm: str, count: int, top1: float) -> dict:
    return {"arm": arm, "clips_per_class": count, "video_top1": top1, "train_seconds": 10.0 * count}


def test_merge_adds_the_other_arms_runs_and_keeps_its_own(tmp_path):
    other = tmp_path / "scratch_runs"
    other.mkdir()
    (other / "results.json").write_text(json.dumps([_run("scratch", 10, 0.4), _run("finetune", 10, 0.1)]))
    merged = merge_results([_run("finetune", 10, 0.9)], [str(other)])
    assert sorted((r["arm"], r["video_top1"]) for r in merged) == [("finetune", 0.9), ("scratch", 0.4)]
    lines = table(merged).splitlines()
    assert lines[0] == "| clips per class | 10 |"
    assert "| finetune video top-1 | 0.90 |" in lines and "| scratch video top-1 | 0.40 |" in lines
    with pytest.raises(SystemExit, match="missing.*results.json"):
        merge_results([], [str(tmp_path / "missing")])


def test_docs_json_keeps_the_recipe_checks(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    docs.mkdir()
    for name in ("learning_curve.md", "learning_curve.png"):
        (out / name).write_text(name)
    variant = {**_run("finetune", 10, 0.6), "overrides": ["data.frame_stride=2"]}
    (docs / "learning_curve.json").write_text(json.dumps({"curve": [], "variants": [variant]}))
    write_docs(docs, out, [_run("finetune", 3, 0.5)])
    data = json.loads((docs / "learning_curve.json").read_text())
    assert data == {"curve": [_run("finetune", 3, 0.5)], "variants": [variant]}
    assert (docs / "learning_curve.md").read_text() == "learning_curve.md"
    assert sorted(p.name for p in docs.iterdir()) == ["learning_curve.json", "learning_curve.md", "learning_curve.png"]


def test_data_seed_renders_a_disjoint_benchmark_and_keeps_the_split_sizes(tmp_path):
    from repflow_core.data.video_io import read_frames

    roots = [make_data(tmp_path / f"s{seed}", 1, 1, lambda m: None, seed) for seed in (1, 2)]
    lists = [sorted((r / "testlist.txt").read_text().split()) for r in roots]
    assert [len(x) for x in lists] == [3, 3]  # one test clip per extra action
    first = [read_frames(r / lists[0][0], [0, 20]) for r in roots]
    assert not np.array_equal(first[0], first[1])
