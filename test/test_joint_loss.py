"""The joint loss (issue 13.2) and UF-TSN's staged training (issue 13.3).

- feature-space terms: the representation-flow layer's own flow of a shifted texture explains the next frame
  (low photometric / census loss), zero flow does not, the true flow best;
- the hooks: terms only in training mode, on every flow layer (FcF: two), gradients reach the flow parameters
  and the features' convolution, removable;
- training: each term has its own log.csv column and curve; UF-TSN's three stages in one resumable run
  (the stage follows from the epoch), the flow stage leaves the classifiers alone, and the run learns.
"""

import csv

import pytest
import torch
from test_train import tiny_config, tiny_data  # noqa: F401  (the module-scoped data fixture)

from repflow_core import motion_losses as ml
from repflow_core.config import ConfigError
from repflow_core.flow import RepresentationFlow
from repflow_core.joint_loss import JointLoss, feature_motion_terms
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.train import train

ALL = ml.MotionLossWeights(photometric=1.0, census=1.0, smoothness=1.0)


def shifted_pair(shift=1):
    """Features (1, 4, 2, H, W) in [0, 255]: a smooth random texture and the same moved ``shift`` px right."""
    torch.manual_seed(0)
    img = torch.nn.functional.avg_pool2d(torch.rand(1, 4, 40, 40), 5, 1, 2)[..., 4:-4, 4:-4]
    img = (img - img.amin()) / (img.amax() - img.amin()) * 255
    return torch.stack([img, torch.roll(img, shift, dims=-1)], 2)


def test_the_layer_flow_explains_the_next_frame_better_than_no_motion():
    x = shifted_pair()
    flow = RepresentationFlow(4, iterations=20)(x)
    assert flow[:, :4].mean().item() == pytest.approx(1.0, abs=0.2)  # x-flows first: 1 px right
    learned = feature_motion_terms(x, flow, ALL)
    still = feature_motion_terms(x, torch.zeros_like(flow), ALL)
    true = torch.zeros_like(flow)
    true[:, :4] = 1.0
    exact = feature_motion_terms(x, true, ALL)
    assert set(learned) == {"photometric", "census", "smoothness"}
    for name in ("photometric", "census"):
        assert exact[name] < learned[name] < 0.5 * still[name], name
    assert exact["photometric"] < 0.01  # features in [0, 1]: near-zero residual after warping
    with pytest.raises(ValueError, match="does not match features"):
        feature_motion_terms(x, flow[:, :6], ALL)
    assert feature_motion_terms(x, flow, ml.MotionLossWeights()) == {}  # all weights 0: nothing computed


def tiny_net(flow="single"):
    cfg = ModelConfig(backbone="resnet18", width=0.125, num_classes=3, flow=flow, flow_after="layer1",
                      flow_channels=4, iterations=2, dropout=0.0)
    return ActionNet(cfg)


def test_hooks_collect_training_terms_on_every_flow_layer_with_gradients():
    torch.manual_seed(0)
    net = tiny_net()
    joint = JointLoss(net, ALL)
    assert joint.hooked_layers == 1 and JointLoss(tiny_net("fcf"), ALL).hooked_layers == 2
    assert JointLoss(net, ml.MotionLossWeights()).hooked_layers == 0  # off by default: no hooks at all
    clip = torch.randn(2, 3, 5, 32, 32)
    net.eval()
    net(clip)
    assert joint.collect(net) == {}  # validation / inference: never
    net.train()
    net(clip)
    terms = joint.collect(net)
    assert set(terms) == {"photometric", "census", "smoothness"} and all(torch.isfinite(v) for v in terms.values())
    assert joint.collect(net) == {}  # collecting resets
    sum(terms.values()).backward()
    block = net.flow
    flow_grads = [p.grad for p in block.flow.parameters() if p.requires_grad]
    assert flow_grads and any(g is not None and g.abs().sum() > 0 for g in flow_grads)
    assert block.reduce.weight.grad.abs().sum() > 0  # features and flow are learned together
    joint.remove()
    net(clip)
    assert joint.collect(net) == {}


def test_training_logs_each_term_and_plots_it(tiny_data, tmp_path):  # noqa: F811
    cfg = tiny_config(tiny_data, tmp_path / "joint", epochs=2, **{"loss.photometric": 1.0, "loss.census": 0.1,
                                                                  "loss.smoothness": 0.1})
    result = train(cfg, progress=False)
    rows = list(csv.DictReader(open(result.run_dir / "log.csv")))
    for name in ("photometric_loss", "census_loss", "smoothness_loss"):
        assert all(float(r[name]) > 0 for r in rows), name
    assert all(float(r["train_loss"]) > 0 for r in rows)  # train_loss stays the cross-entropy
    assert (result.run_dir / "curves.png").is_file()
    assert "photometric" in (result.run_dir / "train.log").read_text()
    plain = train(tiny_config(tiny_data, tmp_path / "plain", epochs=1), progress=False)
    header = open(plain.run_dir / "log.csv").readline()
    assert "photometric_loss" not in header and "stage" not in header  # runs without the joint loss: as before


def uftsn_config(root, out_dir, stages="flow:1,classifier:1,end_to_end:1", **extra):
    parsed = [dict(name=s.split(":")[0], epochs=int(s.split(":")[1])) for s in stages.split(",")]
    epochs = extra.pop("epochs", sum(s["epochs"] for s in parsed))
    stage_yaml = "[" + ", ".join(f"{{name: {s['name']}, epochs: {s['epochs']}}}" for s in parsed) + "]"
    return tiny_config(root, out_dir, epochs=epochs, **{"model.motion": "uftsn", "stages": stage_yaml,
                                                        "data.hflip": "false", "data.scale_jitter": "[1.0, 1.0]",
                                                        "optim.lr": "0.02", **extra})


def test_uftsn_stages_in_one_resumable_run(tiny_data, tmp_path):  # noqa: F811
    cfg = uftsn_config(tiny_data, tmp_path / "uf", deterministic="true")
    first = train(cfg, progress=False, stop_after_epochs=1)  # killed after the flow stage
    ckpt = torch.load(tmp_path / "uf" / "last.pt", weights_only=True)
    start = first.model.state_dict()
    resumed = train(cfg, resume=tmp_path / "uf", progress=False)
    rows = list(csv.DictReader(open(resumed.run_dir / "log.csv")))
    assert [r["stage"] for r in rows] == ["flow", "classifier", "end_to_end"]  # resume continued in stage 2
    assert rows[0]["photometric_loss"] != "" and rows[1]["photometric_loss"] == ""  # estimator frozen in stage 2
    assert ckpt["model_config"]["motion"] == "uftsn"
    # The flow stage trained the estimator only: the classifiers are still the initial ones.
    init = train(uftsn_config(tiny_data, tmp_path / "init", stages="flow:1", epochs=1), progress=False,
                 stop_after_epochs=0).model.state_dict()
    assert all(torch.equal(start[k], init[k]) for k in start if k.startswith("temporal.fc") or k.startswith(
        "spatial.fc"))
    assert not all(torch.equal(start[k], init[k]) for k in start if k.startswith("estimator."))
    assert resumed.test is not None and resumed.best_epoch in (1, 2, 3)


def test_uftsn_learns_and_bad_stages_are_refused(tiny_data, tmp_path):  # noqa: F811
    cfg = uftsn_config(tiny_data, tmp_path / "learn", stages="flow:1,end_to_end:4")
    result = train(cfg, progress=False)
    ce = [r["train_loss"] for r in result.history]
    assert min(ce[-2:]) < 0.8 * ce[1], ce  # the labels are fitted once the classifier learns (epochs 2-5)
    with pytest.raises(ConfigError, match="stages add up to 2"):
        train(uftsn_config(tiny_data, tmp_path / "bad", stages="flow:1,end_to_end:1", epochs=3), progress=False)
    with pytest.raises(ConfigError, match="model.motion=uftsn"):
        train(tiny_config(tiny_data, tmp_path / "bad2", epochs=1, stages="[{name: flow, epochs: 1}]"),
              progress=False)
