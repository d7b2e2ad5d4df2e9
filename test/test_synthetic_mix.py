"""One synthetic folder with both worlds: ``synthetic.generation2_per_class`` generation-2 clips beside the
generation-1 set (issue 9: a model trained on the packaged model's world and on robot-camera geometries)."""

from pathlib import Path

import numpy as np
import pytest

from repflow_core.config import TrainConfig, apply_overrides
from repflow_core.data.layouts import build_samples
from repflow_core.data.prepare import generation2_sizes, maybe_generate_synthetic
from repflow_core.data.synthetic import SynthConfig, _clip_seed, render_clip
from repflow_core.data.video_io import read_video

GEOMETRIES = ["128x128", "320x240", "640x360", "360x640"]


def mixed_config(root: Path, **extra) -> TrainConfig:
    overrides = {"data.layout": "splitlist", "data.root": str(root), "synthetic.generate": "true",
                 "synthetic.generation": "1", "synthetic.per_class": "2", "synthetic.generation2_per_class": "4",
                 "synthetic.num_frames": "6", "synthetic.size": "48", "synthetic.test_fraction": "0.5",
                 "synthetic.geometries": str(GEOMETRIES), "synthetic.generator": "{camera: {motion: true}}"}
    overrides.update({k: str(v) for k, v in extra.items()})
    return apply_overrides(TrainConfig(), overrides)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed") / "set"
    said: list[str] = []
    cfg = mixed_config(root)
    assert maybe_generate_synthetic(cfg, said.append, progress=False) is True
    return root, cfg, said


def test_generation2_sizes_keep_each_geometry_aspect_at_the_short_side():
    assert generation2_sizes(["128x128", "320x240", "640x360", "360x640"], 128) == [
        (128, 128), (128, 170), (128, 228), (228, 128)]


def test_mixed_folder_holds_both_generations_in_the_same_classes_and_lists(mixed):
    root, _cfg, said = mixed
    lines = {name: (root / name).read_text().split() for name in ("trainlist.txt", "testlist.txt")}
    every = lines["trainlist.txt"] + lines["testlist.txt"]
    assert len(every) == len(set(every)) == 10 * (2 + 4)
    for split in lines.values():  # each split has both generations of every class (stratified per part)
        for action in ("idle", "wave", "sit_down"):
            mine = [p for p in split if p.startswith(f"{action}/")]
            assert any(Path(p).name.startswith("g2_") for p in mine)
            assert any(not Path(p).name.startswith("g2_") for p in mine)
    assert not (root / ".generation2").exists()
    assert "and 4 of generation 2" in said[0] and "wrote 60 videos" in said[-1]


def test_generation2_clips_are_rendered_natively_at_each_geometry(mixed):
    root, cfg, _ = mixed
    sizes = generation2_sizes(GEOMETRIES, 48)
    for i in range(4):
        path = next((root / "wave").glob(f"g2_wave_{i:04d}.*"))
        frames = read_video(path)
        assert frames.shape[1:3] == sizes[i % len(sizes)]
    # The bytes are generation 2's render of that seed (the camera motion override on), up to the codec.
    path = next((root / "wave").glob("g2_wave_0003.*"))
    want = render_clip("wave", 6, sizes[3], _clip_seed(cfg.synthetic.seed + 1, 1, 3), generation=2,
                       config=SynthConfig.from_dict({"camera": {"motion": True}}))
    assert np.abs(read_video(path).astype(float) - want).mean() < 6.0


def test_generation1_clips_stay_square_at_size(mixed):
    root, _, _ = mixed
    for path in (root / "clap").glob("clap_*"):
        assert read_video(path).shape[1:3] == (48, 48)


def test_the_loader_reads_the_mixed_folder_with_ten_classes(mixed):
    root, cfg, _ = mixed
    samples, classes = build_samples(cfg.data, "train")
    assert len(samples) == 30 and len(classes) == 10


def test_generation2_per_class_needs_a_generation1_set_and_a_count():
    with pytest.raises(ValueError, match="needs synthetic.generation: 1"):
        mixed_config(Path("x"), **{"synthetic.generation": "2"}).validate()
    with pytest.raises(ValueError, match="generation2_per_class must be >= 0"):
        mixed_config(Path("x"), **{"synthetic.generation2_per_class": "-1"}).validate()


def test_a_mixed_folder_of_the_same_recipe_is_reused_without_a_note(mixed):
    root, _, _ = mixed
    said: list[str] = []
    assert maybe_generate_synthetic(mixed_config(root), said.append, progress=False) is False and said == []
    assert maybe_generate_synthetic(mixed_config(root, **{"synthetic.generation2_per_class": "9"}), said.append,
                                    progress=False) is False
    assert "(6 per class), not the 2 + 9 per class" in said[0]


def test_the_packaged_recipe_trains_on_both_worlds_with_the_whole_frame():
    from repflow_core.checkpoint import load_checkpoint
    from repflow_core.config import load_train_config
    from repflow_core.recognizer import default_checkpoint

    cfg = load_train_config(Path(__file__).resolve().parents[1] / "config" / "train_synthetic.yaml")
    assert cfg.synthetic.generation == 1 and cfg.synthetic.generation2_per_class == cfg.synthetic.per_class > 0
    assert cfg.data.crop == "full" and load_checkpoint(default_checkpoint()).input_spec.crop == "full"
