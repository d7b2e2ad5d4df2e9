"""The geometry policy (input_spec.crop: center | full): one preprocessing for training's evaluation path, the
Recognizer and every consumer of a checkpoint; old checkpoints read as center."""

import cv2
import numpy as np
import pytest
import torch

from repflow_core.checkpoint import Checkpoint, CheckpointError, InputSpec, load_checkpoint, save_checkpoint
from repflow_core.data.transforms import KINETICS_MEAN, KINETICS_STD, eval_clip, pad_value, preprocess_frame
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.recognizer import FrameShapeError, Recognizer

LABELS = ["wave", "clap", "idle"]
SHAPES = [(360, 640), (480, 640), (240, 320), (640, 360), (128, 128), (20, 30), (1080, 1920), (100, 700)]


def _checkpoint(path, crop=None, size=(32, 32), resize_short=40):
    torch.manual_seed(0)
    cfg = ModelConfig(width=0.125, num_classes=3, flow_channels=8, iterations=2, flow_after="layer1", dropout=0.0)
    spec = InputSpec(clip_len=6, size=size, resize_short=resize_short)
    data = Checkpoint(cfg, LABELS, spec, ActionNet(cfg).state_dict()).to_dict()
    if crop is None:
        del data["input_spec"]["crop"]  # a checkpoint from before the field existed
    else:
        data["input_spec"]["crop"] = crop
    torch.save(data, path)
    return path


def _old_center_preprocess(frame, size, resize_short):
    """The centre policy as it was before the policy existed (reference for byte identity)."""
    h, w = frame.shape[:2]
    out_h, out_w = size
    scale = resize_short / min(h, w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    if (new_h, new_w) != (h, w):
        frame = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return frame[top: top + out_h, left: left + out_w]


def _frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_old_checkpoints_read_as_center_and_center_is_byte_identical_to_before(tmp_path):
    path = _checkpoint(tmp_path / "old.pt", crop=None)
    assert load_checkpoint(path).input_spec.crop == "center"
    rec = Recognizer.from_checkpoint(path, device="cpu")
    rec.on_warning = lambda msg: None
    for h, w in SHAPES:
        frame = _frame(h, w)
        np.testing.assert_array_equal(rec.preprocess(frame), _old_center_preprocess(frame, (32, 32), 40))


def test_full_keeps_the_whole_frame_letterboxed_with_the_mean_colour(tmp_path):
    rec = Recognizer.from_checkpoint(_checkpoint(tmp_path / "full.pt", crop="full"), device="cpu")
    assert rec.crop == "full"
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:, :60] = (255, 0, 0)  # a person in the left edge: a centre crop cuts it off
    frame[:, -60:] = (0, 255, 0)
    out = rec.preprocess(frame)
    assert out.shape == (32, 32, 3) and out.flags["C_CONTIGUOUS"]
    assert (out[16, 0] == (255, 0, 0)).all() and (out[16, -1] == (0, 255, 0)).all()
    assert (out[0, 16] == pad_value()).all() and (out[-1, 16] == pad_value()).all()  # 16:9 -> bars top/bottom
    # the centre policy loses both edges:
    cut = preprocess_frame(frame, (32, 32), 40, "center")
    assert not (cut == (255, 0, 0)).all(axis=-1).any()
    # padding is ~0 after normalisation
    pad = (np.array(pad_value(), float) / 255 - np.array(KINETICS_MEAN)) / np.array(KINETICS_STD)
    assert np.abs(pad).max() < 0.01
    # portrait: bars left/right
    out = rec.preprocess(np.full((640, 360, 3), 200, np.uint8))
    assert (out[16, 0] == pad_value()).all() and (out[16, 16] == 200).all()


@pytest.mark.parametrize("crop", ["center", "full"])
def test_training_eval_path_equals_recognizer_preprocess_byte_for_byte(tmp_path, crop):
    rec = Recognizer.from_checkpoint(_checkpoint(tmp_path / "m.pt", crop=crop), device="cpu")
    rec.on_warning = lambda msg: None
    for i, (h, w) in enumerate(SHAPES):
        clip = np.stack([_frame(h, w, seed=i * 10 + t) for t in range(3)])
        expected = np.stack([rec.preprocess(f) for f in clip])
        got = eval_clip(clip, 32, 40, crop).permute(1, 2, 3, 0).numpy()
        np.testing.assert_array_equal(got, expected)


def test_full_upscales_small_frames_with_one_warning_and_refuses_absurd_shapes(tmp_path):
    rec = Recognizer.from_checkpoint(_checkpoint(tmp_path / "full.pt", crop="full"), device="cpu")
    said = []
    rec.on_warning = said.append
    assert rec.preprocess(_frame(20, 30)).shape == (32, 32, 3)
    rec.preprocess(_frame(10, 12))
    assert len(said) == 1 and "upscaling" in said[0]
    for shape in ((1, 1000, 3), (0, 64, 3), (64, 0, 3), (10, 1000, 3)):
        with pytest.raises(FrameShapeError):
            rec.preprocess(np.zeros(shape, np.uint8))


def test_full_allocates_no_more_than_the_model_input():
    """The full policy resizes straight to the fitted size: the only arrays it makes are at most the input."""
    big = _frame(2000, 8000)
    out = preprocess_frame(big, (112, 112), 128, "full")
    assert out.shape == (112, 112, 3)
    # 4:1 -> content 28 rows high, centred
    assert (out[:40] == pad_value()).all() and not (out[56] == pad_value()).all()


def test_crop_policy_is_stored_and_validated_in_the_checkpoint(tmp_path):
    path = _checkpoint(tmp_path / "full.pt", crop="full")
    ckpt = load_checkpoint(path)
    assert ckpt.input_spec.crop == "full" and ckpt.input_spec.to_dict()["crop"] == "full"
    save_checkpoint(ckpt, tmp_path / "again.pt")
    assert load_checkpoint(tmp_path / "again.pt").input_spec.crop == "full"
    bad = _checkpoint(tmp_path / "bad.pt", crop="letterbox")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert info.value.field == "input_spec.crop" and "letterbox" in str(info.value)
    with pytest.raises(ValueError, match="crop"):
        preprocess_frame(_frame(40, 40), (32, 32), 40, "zoom")


def test_train_config_puts_the_crop_in_the_input_spec():
    from repflow_core.config import TrainConfig
    from repflow_core.train import input_spec

    cfg = TrainConfig()
    assert input_spec(cfg).crop == "center"  # default of DataConfig: unchanged behaviour for old configs
    cfg.data.crop = "full"
    assert input_spec(cfg).crop == "full"
    with pytest.raises(ValueError, match="crop"):
        cfg.data.crop = "zoom"
        cfg.data.validate()
