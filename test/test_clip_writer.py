"""ClipWriter (repflow_ros.clip_writer, no ROS): a discarded clip leaves the dataset loadable."""

import numpy as np

from repflow_core.data.layouts import scan_class_folders
from repflow_ros.clip_writer import ClipWriter

T0_NS = 1_700_000_000 * 10**9


def _clip(root, label: str, number: int) -> ClipWriter:
    writer = ClipWriter(root, label, number, fps=15.0)
    for i in range(3):
        writer.add(np.full((24, 32, 3), 40 * i, np.uint8), T0_NS + number * 10**9 + i * 66_000_000, "cam")
    return writer


def test_a_discarded_first_clip_leaves_no_empty_class_folder(tmp_path):
    _clip(tmp_path, "wave", 1).discard()
    assert list(tmp_path.iterdir()) == []


def test_a_discarded_clip_keeps_the_folder_and_the_clips_already_committed(tmp_path):
    kept = _clip(tmp_path, "wave", 1).commit()
    _clip(tmp_path, "wave", 2).discard()
    samples, classes = scan_class_folders(tmp_path)
    assert classes == ["wave"] and [s.path for s in samples] == [kept.path]
