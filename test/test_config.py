"""Typed config loading: YAML -> dataclasses, dotted overrides, clear errors, the shipped configs."""

from pathlib import Path

import pytest

from repflow_core.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    dump_yaml,
    load_train_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


def test_shipped_configs_load_with_the_papers_settings():
    syn = load_train_config(CONFIG_DIR / "train_synthetic.yaml")
    assert (syn.model.backbone, syn.model.width, syn.model.flow) == ("resnet18", 0.25, "single")
    assert syn.data.layout == "splitlist" and syn.synthetic.generate and syn.data.clip_len == 16
    assert syn.optim.momentum == 0.9 and syn.optim.flow_lr_scale == 0.01
    # The packaged model's recipe renders the packaged model's data, whatever the generator's default becomes.
    assert syn.synthetic.generation == 1

    hmdb = load_train_config(CONFIG_DIR / "train_hmdb51.yaml")
    assert hmdb.model.dropout == 0.8 and hmdb.optim.lr == 0.005
    assert (hmdb.optim.schedule, hmdb.optim.step_size, hmdb.epochs) == ("step", 20, 50)

    kin = load_train_config(CONFIG_DIR / "train_kinetics.yaml")
    assert (kin.model.backbone, kin.model.iterations, kin.data.clip_len, kin.data.size) == ("resnet50", 20, 32, 224)
    assert (kin.optim.lr, kin.optim.step_size, kin.epochs, kin.data.layout) == (0.1, 50, 200, "folders")

    ucf = load_train_config(CONFIG_DIR / "train_ucf101.yaml")
    assert ucf.data.layout == "ucf101"


def test_dotted_overrides_convert_to_the_field_types():
    cfg = apply_overrides(TrainConfig(), ["model.width=0.5", "optim.lr=5e-2", "data.root=/data/ucf101",
                                          "epochs=3", "data.hflip=false", "data.scale_jitter=[0.5, 1.0]",
                                          "data.root=123"])
    assert cfg.model.width == 0.5 and isinstance(cfg.model.width, float)
    assert cfg.optim.lr == 0.05 and cfg.epochs == 3 and cfg.data.hflip is False
    assert cfg.data.scale_jitter == (0.5, 1.0)
    assert cfg.data.root == "123"  # string fields take the text verbatim


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"model\.widht.*did you mean 'width'"):
        apply_overrides(TrainConfig(), ["model.widht=0.5"])
    with pytest.raises(ConfigError, match=r"'nosuch'"):
        apply_overrides(TrainConfig(), ["nosuch.lr=1"])


def test_unknown_key_in_a_yaml_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim\.learning_rate"):
        load_train_config(path)


@pytest.mark.parametrize("override, key", [
    ("model.width=abc", "model.width"),
    ("epochs=1.5", "epochs"),
    ("data.hflip=maybe", "data.hflip"),
    ("model.flow=banana", "flow"),
    ("optim.schedule=linear", "optim.schedule"),
    ("amp=fp8", "amp"),
    ("data.scale_jitter=[0.5]", "data.scale_jitter"),
    ("epochs", "key=value"),
])
def test_bad_values_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(TrainConfig(), [override])


def test_command_line_flags_and_round_trip(tmp_path):
    from repflow_core.train import build_parser, config_from_args

    args = build_parser().parse_args(["--config", str(CONFIG_DIR / "train_synthetic.yaml"), "--epochs", "3",
                                      "--lr", "0.01", "--set", "model.width=0.5", "data.root=/x",
                                      "--deterministic"])
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.optim.lr, cfg.model.width, cfg.data.root, cfg.deterministic) == (3, 0.01, 0.5, "/x", True)
    dump_yaml(cfg, tmp_path / "config.yaml")
    assert load_train_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("train_*.yaml")) + [CONFIG_DIR / "finetune.yaml"],
                         ids=lambda p: p.name)
def test_every_shipped_training_config_loads_and_builds_its_model(path):
    import torch

    from repflow_core.model import build_model

    cfg = load_train_config(path)
    cfg.model.num_classes = cfg.model.num_classes or 10
    model = build_model(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    clip = torch.zeros(1, 3, cfg.data.clip_len, 32, 32)
    assert model(clip).shape == (1, cfg.model.num_classes)


def test_the_generation_2_recipes_put_the_flow_layer_on_the_input():
    # Measured on the generation-2 stream (README, "Where the flow layer sits"): ahead of layer1 and layer2.
    for name in ("train_synthetic_v2.yaml", "train_synthetic_gpu.yaml"):
        cfg = load_train_config(CONFIG_DIR / name)
        assert (cfg.model.flow_after, cfg.synthetic.generation, cfg.data.crop) == ("input", 2, "full"), name
