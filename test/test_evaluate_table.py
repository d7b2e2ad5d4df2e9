"""The per-class table that ``evaluate`` prints (accuracy, support, most-confused-with) beside its summary."""

import pytest
from test_evaluate import setup  # noqa: F401  (the module-scoped fixture: a small dataset and checkpoint)

from repflow_core.evaluate import evaluate_checkpoint, main, per_class_table


def test_table_rows_accuracy_support_and_most_confused_class():
    conf = [[6, 3, 1], [0, 10, 0], [0, 0, 0]]
    lines = per_class_table(conf, ["wave", "clap", "walk_left"]).splitlines()
    assert lines[0].split() == ["class", "accuracy", "support", "most", "confused", "with"]
    assert lines[1].split() == ["wave", "60.0%", "10", "clap", "(3,", "30%)"]
    assert lines[2].split() == ["clap", "100.0%", "10", "-"]  # never confused
    assert lines[3].split() == ["walk_left", "-", "0", "-"]  # no test videos: no accuracy to show
    # Columns line up whatever the class names' lengths.
    assert len({line.index("%") for line in lines[1:3]}) == 1


def test_table_rejects_a_matrix_that_does_not_match_the_labels():
    with pytest.raises(ValueError, match=r"\(2, 2\) does not match 3 labels"):
        per_class_table([[1, 0], [0, 1]], ["a", "b", "c"])


def test_evaluate_prints_the_table_before_the_summary(setup, capsys):  # noqa: F811
    tmp, cfg = setup
    lines: list[str] = []
    m = evaluate_checkpoint(tmp / "model.pt", cfg.data, clips=1, crops=1, device="cpu", write_files=False,
                            progress=False, log=lines.append)
    table = next(s for s in lines if s.startswith("class"))
    rows = table.splitlines()[1:]
    assert [r.split()[0] for r in rows] == m["labels"]
    assert sum(int(r.split()[2]) for r in rows) == m["num_videos"]
    assert lines.index(table) < next(i for i, s in enumerate(lines) if "mean class accuracy" in s)
    # The CLI prints it too, followed by the JSON summary.
    from repflow_core.config import dump_yaml

    dump_yaml(cfg, tmp / "table_cfg.yaml")
    assert main(["--checkpoint", str(tmp / "model.pt"), "--config", str(tmp / "table_cfg.yaml"), "--clips", "1",
                 "--device", "cpu", "--out", str(tmp / "table_cli"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "most confused with" in out and out.index("most confused with") < out.index('"video_top1"')
