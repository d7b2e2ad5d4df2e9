"""Distributed training: two CPU processes (gloo) under torchrun end with identical weights.

Each rank trains on its own half of every epoch (DistributedSampler); DistributedDataParallel averages
the gradients, so after the optimiser steps both ranks must hold the same parameters. Each rank writes a
hash of its parameters (and of its EMA parameters); only rank 0 writes the run folder.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from repflow_core.data.synthetic import write_dataset

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    import torch
    from repflow_core.config import TrainConfig, apply_overrides
    from repflow_core.train import train

    root, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    cfg = apply_overrides(TrainConfig(), {
        "model.width": "0.125", "model.flow_after": "layer1", "model.flow_channels": "4",
        "model.iterations": "2", "data.root": root, "data.clip_len": "6", "data.size": "32",
        "data.resize_short": "36", "data.num_workers": "0", "data.test_clips": "1", "epochs": "1",
        "batch_size": "3", "optim.lr": "0.05", "ema_decay": "0.5", "out_dir": out + "/run",
        "tensorboard": "false", "device": "cpu", "deterministic": "true", "data.val_fraction": "0"})
    res = train(cfg, progress=False)
    from repflow_core.model import ActionNet
    from repflow_core.train import _derive_seed, seed_everything
    seed_everything(_derive_seed(cfg.seed, "init"))  # what train() does before building the model
    cfg.model.num_classes = len(res.classes)
    initial = ActionNet(cfg.model)

    def digest(module):
        h = hashlib.sha256()
        for name, p in sorted(module.named_parameters()):
            h.update(name.encode()); h.update(p.detach().numpy().tobytes())
        return h.hexdigest()

    rank = int(os.environ["RANK"])
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"params": digest(res.model), "ema": digest(res.ema_model), "initial": digest(initial),
                   "steps": res.history[-1]["step"], "world": int(os.environ["WORLD_SIZE"])}, f)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, per_class=1, num_frames=8, size=40, fps=15, seed=2, test_fraction=0.0, progress=False)
    # test_fraction 0 gives no test videos; validate on the training list.
    (data / "testlist.txt").write_text((data / "trainlist.txt").read_text())
    script = tmp_path / "ddp_job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), str(data), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    # 10 videos, 2 ranks x batch 3: 5 per rank -> 2 optimiser steps per epoch on each rank.
    assert r0["steps"] == r1["steps"] == 2
    assert r0["params"] == r1["params"] and r0["ema"] == r1["ema"]
    # Both ranks started from the same weights and the steps changed them.
    assert r0["initial"] == r1["initial"] != r0["params"]
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "log.csv").is_file()
