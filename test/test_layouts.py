"""Dataset layouts: folder trees, UCF101, HMDB51, CSV and split lists, and their error messages.

Layout parsing never decodes, so most fixtures are empty placeholder files; one test uses real videos.
"""

import logging
from pathlib import Path

import numpy as np
import pytest

from repflow_core.data.layouts import (
    DataConfig,
    DatasetError,
    VideoSample,
    build_samples,
    fingerprint,
    load_csv,
    load_hmdb51,
    load_split_list,
    load_ucf101,
    scan_class_folders,
)
from repflow_core.data.video_io import write_frames, write_video


def touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def frame_folder(p: Path) -> Path:
    touch(p / "frame_1.jpg")
    return p


def labels_by_name(samples, classes):
    return {s.path.name: classes[s.label] for s in samples}


# ------------------------------------------------------------------------------- class folders


def test_scan_class_folders_files_and_frame_folders(tmp_path):
    touch(tmp_path / "b_class" / "v2.mp4")
    touch(tmp_path / "b_class" / "v10.avi")
    touch(tmp_path / "b_class" / "readme.txt")  # ignored
    frame_folder(tmp_path / "a_class" / "clip1")
    touch(tmp_path / "a_class" / "x.MKV")
    touch(tmp_path / ".hidden" / "v.avi")
    samples, classes = scan_class_folders(tmp_path)
    assert classes == ["a_class", "b_class"]
    assert [s.path.name for s in samples] == ["clip1", "x.MKV", "v2.mp4", "v10.avi"]
    assert [s.label for s in samples] == [0, 0, 1, 1]


def test_scan_class_folders_with_real_videos(tmp_path):
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    (tmp_path / "run").mkdir()
    write_video(tmp_path / "run" / "r.avi", frames)
    write_frames(tmp_path / "sit" / "s1", frames)
    samples, classes = scan_class_folders(tmp_path)
    assert classes == ["run", "sit"] and len(samples) == 2


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        scan_class_folders(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="zero samples"):
        scan_class_folders(tmp_path)
    touch(tmp_path / "ok" / "a.avi")
    touch(tmp_path / "hollow" / "notes.txt")
    with pytest.raises(DatasetError, match="empty class 'hollow'") as e:
        scan_class_folders(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_kinetics_style_train_val(tmp_path):
    for c in ("abseil", "yoga", "zumba"):
        touch(tmp_path / "train" / c / f"{c}1.mp4")
    touch(tmp_path / "val" / "zumba" / "z.mp4")
    cfg = DataConfig(layout="folders", root=str(tmp_path))
    tr, classes = build_samples(cfg, "train")
    te, classes_te = build_samples(cfg, "test")
    assert classes == classes_te == ["abseil", "yoga", "zumba"]
    assert len(tr) == 3 and [s.label for s in te] == [2]
    touch(tmp_path / "val" / "karate" / "k.mp4")
    with pytest.raises(DatasetError, match="unknown class 'karate'"):
        build_samples(cfg, "test")


def test_folders_without_split_has_no_test(tmp_path):
    touch(tmp_path / "a" / "1.avi")
    cfg = DataConfig(layout="folders", root=str(tmp_path))
    assert len(build_samples(cfg, "train")[0]) == 1
    with pytest.raises(DatasetError, match="no test subset"):
        build_samples(cfg, "test")


# ------------------------------------------------------------------------------------- UCF101


def make_ucf(tmp_path):
    videos = tmp_path / "UCF-101"
    splits = tmp_path / "ucfTrainTestlist"
    names = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    touch(splits / "classInd.txt", "".join(f"{i + 1} {n}\r\n" for i, n in enumerate(names)).encode())
    train = [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
        "YoYo/v_YoYo_g08_c01.avi 3",
    ]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "YoYo/v_YoYo_g01_c01.avi"]
    touch(splits / "trainlist01.txt", ("\r\n".join(train) + "\r\n").encode())
    touch(splits / "testlist01.txt", "\n".join(test).encode())
    for line in train + test:
        touch(videos / line.split()[0])
    return videos, splits, names


def test_ucf101_train_and_test(tmp_path):
    videos, splits, names = make_ucf(tmp_path)
    tr, classes = load_ucf101(videos, splits, 1, "train")
    assert classes == names
    assert [s.label for s in tr] == [0, 1, 2]
    te, _ = load_ucf101(videos, splits, 1, "test")
    assert labels_by_name(te, classes) == {"v_ApplyEyeMakeup_g01_c01.avi": "ApplyEyeMakeup",
                                          "v_YoYo_g01_c01.avi": "YoYo"}
    cfg = DataConfig(layout="ucf101", root=str(videos), split_dir=str(splits))
    assert build_samples(cfg, "test") == (te, classes)


def test_ucf101_frame_folder_fallback_and_missing(tmp_path, caplog):
    videos, splits, _ = make_ucf(tmp_path)
    avi = videos / "YoYo" / "v_YoYo_g01_c01.avi"
    avi.unlink()
    frame_folder(avi.with_suffix(""))  # pre-extracted frames instead of the .avi
    (videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi").unlink()  # gone
    with caplog.at_level(logging.WARNING):
        te, _ = load_ucf101(videos, splits, 1, "test")
    assert [s.path.name for s in te] == ["v_YoYo_g01_c01"]
    assert "1 of 2 videos" in caplog.text
    with pytest.raises(DatasetError, match="none of the 3 videos"):
        load_ucf101(splits, splits, 1, "train")  # wrong video root


def test_ucf101_errors(tmp_path):
    videos, splits, _ = make_ucf(tmp_path)
    with pytest.raises(DatasetError, match="unknown split 4"):
        load_ucf101(videos, splits, 4, "train")
    with pytest.raises(DatasetError, match="unknown subset 'val'"):
        load_ucf101(videos, splits, 1, "val")
    with pytest.raises(DatasetError, match="trainlist02.txt"):
        load_ucf101(videos, splits, 2, "train")
    with pytest.raises(DatasetError, match="not found: .*missing_root"):
        load_ucf101(tmp_path / "missing_root", splits)
    (splits / "testlist01.txt").write_text("Juggling/v_Juggling_g01_c01.avi\n")
    with pytest.raises(DatasetError, match=r"testlist01.txt:1: unknown class 'Juggling'"):
        load_ucf101(videos, splits, 1, "test")
    (splits / "trainlist01.txt").write_text("YoYo/v_YoYo_g08_c01.avi 1\n")
    with pytest.raises(DatasetError, match="label 1 does not match class 'YoYo'"):
        load_ucf101(videos, splits, 1, "train")
    (splits / "trainlist01.txt").write_text("YoYo/v_YoYo_g08_c01.avi 3\n")
    with pytest.raises(DatasetError, match="empty class 'ApplyEyeMakeup'"):
        load_ucf101(videos, splits, 1, "train")


# ------------------------------------------------------------------------------------- HMDB51


def make_hmdb(tmp_path):
    videos, splits = tmp_path / "hmdb51", tmp_path / "splits"
    spec = {"wave": ["w1.avi 1", "w2.avi 2", "w3.avi 0"], "brush_hair": ["b1.avi 2 ", "b2.avi 1"]}
    for cls, lines in spec.items():
        touch(splits / f"{cls}_test_split1.txt", ("\n".join(lines) + "\n").encode())
        touch(splits / f"{cls}_test_split2.txt", b"")
        for line in lines:
            touch(videos / cls / line.split()[0])
    return videos, splits


def test_hmdb51_subsets(tmp_path):
    videos, splits = make_hmdb(tmp_path)
    tr, classes = load_hmdb51(videos, splits, 1, "train")
    assert classes == ["brush_hair", "wave"]
    assert labels_by_name(tr, classes) == {"b2.avi": "brush_hair", "w1.avi": "wave"}
    te, _ = load_hmdb51(videos, splits, 1, "test")
    assert labels_by_name(te, classes) == {"b1.avi": "brush_hair", "w2.avi": "wave"}
    cfg = DataConfig(layout="hmdb51", root=str(videos), split_dir=str(splits), split=1)
    assert build_samples(cfg, "train") == (tr, classes)


def test_hmdb51_errors(tmp_path):
    videos, splits = make_hmdb(tmp_path)
    with pytest.raises(DatasetError, match="zero samples for split 2"):
        load_hmdb51(videos, splits, 2, "train")
    with pytest.raises(DatasetError, match="_test_split3.txt"):
        load_hmdb51(videos, splits, 3, "train")
    with pytest.raises(DatasetError, match="unknown split 0"):
        load_hmdb51(videos, splits, 0, "train")
    (splits / "wave_test_split1.txt").write_text("w1.avi 7\n")
    with pytest.raises(DatasetError, match="wave_test_split1.txt:1"):
        load_hmdb51(videos, splits, 1, "train")
    (splits / "wave_test_split1.txt").write_text("w2.avi 2\n")
    with pytest.raises(DatasetError, match="empty class 'wave'"):
        load_hmdb51(videos, splits, 1, "train")


# ---------------------------------------------------------------------------------------- CSV


def test_csv_header_relative_paths_and_names(tmp_path):
    touch(tmp_path / "data" / "clips" / "a.mp4")
    touch(tmp_path / "data" / "clips" / "b, c.mp4")
    frame_folder(tmp_path / "data" / "clips" / "f")
    csv_path = touch(tmp_path / "data" / "train.csv",
                     b'path,label\nclips/a.mp4,walk\n"clips/b, c.mp4",run\n\n# comment\nclips/f,walk\n')
    samples, classes = load_csv(csv_path)
    assert classes == ["run", "walk"]
    assert labels_by_name(samples, classes) == {"a.mp4": "walk", "b, c.mp4": "run", "f": "walk"}
    # no header, explicit video root, absolute path
    csv2 = touch(tmp_path / "lists" / "t.csv",
                 f"clips/a.mp4,run\n{tmp_path / 'data' / 'clips' / 'f'},walk\n".encode())
    s2, c2 = load_csv(csv2, video_root=tmp_path / "data", classes=classes)
    assert c2 == classes and [s.label for s in s2] == [0, 1]


def test_csv_numeric_labels_natural_order(tmp_path):
    rows = "".join(f"v{i}.avi,{i}\n" for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9))
    for i in range(11):
        touch(tmp_path / f"v{i}.avi")
    samples, classes = load_csv(touch(tmp_path / "l.csv", rows.encode()))
    assert classes == [str(i) for i in range(11)]
    assert all(s.label == int(s.path.stem[1:]) for s in samples)


def test_csv_errors_and_build(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "train.csv", b"a.mp4,walk\n")
    touch(tmp_path / "test.csv", b"a.mp4,swim\n")
    with pytest.raises(DatasetError, match="CSV file not found: .*nope.csv"):
        load_csv(tmp_path / "nope.csv")
    cfg = DataConfig(layout="csv", root=str(tmp_path), csv_train="train.csv", csv_test="test.csv")
    assert build_samples(cfg, "train")[1] == ["walk"]
    with pytest.raises(DatasetError, match=r"test.csv:1: unknown class 'swim'"):
        build_samples(cfg, "test")
    touch(tmp_path / "bad.csv", b"only_one_column\n")
    with pytest.raises(DatasetError, match="bad.csv:1"):
        load_csv(tmp_path / "bad.csv")
    touch(tmp_path / "hdr.csv", b"path,label\n")
    with pytest.raises(DatasetError, match="zero samples in .*hdr.csv"):
        load_csv(tmp_path / "hdr.csv")
    with pytest.raises(DatasetError, match="csv_test is not set"):
        build_samples(DataConfig(layout="csv", root=str(tmp_path), csv_train="train.csv"), "test")


# ---------------------------------------------------------------------------------- split list


def make_splitlist(tmp_path, class_ind=True):
    for c in ("push", "pull"):
        for k in range(2):
            touch(tmp_path / c / f"{c}{k}.avi")
    if class_ind:
        touch(tmp_path / "classInd.txt", b"1 push\n2 pull\n")
    return tmp_path


def test_split_list_with_class_ind_and_numbers(tmp_path):
    root = make_splitlist(tmp_path)
    touch(root / "trainlist.txt", b"push/push0.avi 1\npull/pull0.avi 2\n")
    touch(root / "testlist.txt", b"pull/pull1.avi\n")
    tr, classes = load_split_list(root, "trainlist.txt")
    assert classes == ["push", "pull"]  # classInd order, not sorted
    assert [s.label for s in tr] == [0, 1]
    te, _ = build_samples(DataConfig(layout="splitlist", root=str(root)), "test")
    assert [s.label for s in te] == [1]
    touch(root / "zero.txt", b"push/push0.avi 0\npull/pull0.avi 1\n")  # 0-based numbering
    assert [s.label for s in load_split_list(root, "zero.txt")[0]] == [0, 1]


def test_split_list_without_class_ind_uses_sorted_folders(tmp_path):
    root = make_splitlist(tmp_path, class_ind=False)
    touch(root / "trainlist.txt", b"push/push0.avi\npull/pull1.avi\n")
    tr, classes = load_split_list(root, "trainlist.txt")
    assert classes == ["pull", "push"]
    assert labels_by_name(tr, classes) == {"push0.avi": "push", "pull1.avi": "pull"}


def test_split_list_errors(tmp_path):
    root = make_splitlist(tmp_path)
    with pytest.raises(DatasetError, match="split file not found: .*trainlist.txt"):
        load_split_list(root, "trainlist.txt")
    touch(root / "trainlist.txt", b"push/push0.avi\njump/j.avi\n")
    with pytest.raises(DatasetError, match=r"trainlist.txt:2: unknown class 'jump'"):
        load_split_list(root, "trainlist.txt")
    touch(root / "trainlist.txt", b"push/push0.avi 2\n")
    with pytest.raises(DatasetError, match="does not match class 'push'"):
        load_split_list(root, "trainlist.txt")
    touch(root / "trainlist.txt", b"push/push0.avi\n")
    with pytest.raises(DatasetError, match="empty class 'pull' in .*trainlist.txt"):
        load_split_list(root, "trainlist.txt")
    touch(root / "trainlist.txt", b"# nothing\n")
    with pytest.raises(DatasetError, match="zero samples"):
        load_split_list(root, "trainlist.txt")


# -------------------------------------------------------------------------- config / fingerprint


def test_data_config_validation_and_dict_round_trip():
    cfg = DataConfig(layout="csv", scale_jitter=[0.5, 1.0], hflip_pairs=[["l", "r"]])
    assert cfg.scale_jitter == (0.5, 1.0)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    assert DataConfig().num_views == 5
    for bad in ({"layout": "kinetics"}, {"test_crops": 2}, {"scale_jitter": (0.9, 0.5)},
                {"short_video": "bounce"}, {"clip_len": 0}, {"hflip_pairs": [["a"]]}):
        with pytest.raises(ValueError):
            DataConfig(**bad)
    with pytest.raises(ValueError, match="unknown keys"):
        DataConfig.from_dict({"clip_length": 8})
    with pytest.raises(DatasetError, match="root is not set"):
        build_samples(DataConfig(layout="folders"), "train")
    with pytest.raises(DatasetError, match="unknown subset"):
        build_samples(DataConfig(layout="folders", root="/x"), "valid")


def test_fingerprint(tmp_path):
    a = touch(tmp_path / "c" / "a.avi", b"12345")
    b = touch(tmp_path / "c" / "b.avi", b"1")
    s = [VideoSample(a, 0), VideoSample(b, 1)]
    fp = fingerprint(s)
    assert len(fp) == 12 and fp == fingerprint(list(reversed(s)))
    assert fp != fingerprint([VideoSample(a, 1), VideoSample(b, 0)])
    b.write_bytes(b"22")
    fp_changed = fingerprint(s)
    assert fp != fp_changed
    # paths are relative to the samples' common folder: moving the dataset keeps the fingerprint
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "c").rename(moved / "c")
    s_moved = [VideoSample(moved / "c" / "a.avi", 0), VideoSample(moved / "c" / "b.avi", 1)]
    assert fingerprint(s_moved) == fp_changed
