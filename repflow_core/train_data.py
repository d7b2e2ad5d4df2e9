"""The data side of a training run: training / validation / test datasets and loaders, the recorded
validation split, and the final test of the best weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic_io import atomic_write_text
from .checkpoint import atomic_save, load_checkpoint_dict
from .data.dataset import VideoClipDataset, make_loader, scan_dataset
from .data.layouts import DatasetError, build_samples, fingerprint
from .data.splits import carve_validation, check_disjoint, read_split_json, split_record, write_split_json
from .train_finetune import BalancedEpochSampler
from .train_io import write_log_csv, write_plots
from .train_loop import DistInfo, EpochShuffleSampler, ShardSampler, validate

__all__ = ["RunData", "final_test", "prepare_data"]


@dataclass
class RunData:
    classes: list[str]
    train_ds: VideoClipDataset
    train_sampler: Any
    train_loader: Any
    val_ds: VideoClipDataset | None = None
    val_loader: Any = None
    test_ds: VideoClipDataset | None = None
    test_loader: Any = None
    fingerprints: dict = field(default_factory=dict)


def _samples(cfg, subset: str):
    """build_samples with the config keys named in the error (data.root / data.split_dir / layout)."""
    try:
        return build_samples(cfg.data, subset)
    except DatasetError as exc:
        d = cfg.data
        keys = f"data.layout={d.layout!r}, data.root={d.root!r}"
        if d.layout in ("ucf101", "hmdb51", "splitlist"):
            keys += f", data.split_dir={d.split_dir!r}" + (" (empty: the dataset root)" if not d.split_dir else "")
        raise DatasetError(f"{exc} [{keys}]") from exc


def _split(cfg, run_dir: Path, train_samples, test_samples, classes, is_main: bool, resumed: bool, say):
    d = cfg.data
    split = carve_validation(train_samples, classes, d.val_fraction, d.val_split_seed, d.val_group_regex)
    check_disjoint(split.val, test_samples)
    record = split_record(split, classes, d.root, len(test_samples))
    path = run_dir / "split.json"
    if resumed and path.is_file():
        old = read_split_json(path)
        if (old.get("train"), old.get("val")) != (record["train"], record["val"]):
            raise DatasetError(f"--resume: the validation split recomputed from the data differs from {path} "
                               f"(videos added or removed, or data.val_* changed); resume with the same data")
    elif is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_split_json(path, record)
    say(split.summary())
    return split


def prepare_data(cfg, run_dir: Path, dinfo: DistInfo, device: torch.device, say: Callable[[str], None],
                 progress: bool, resume_labels: list[str] | None, resumed: bool) -> RunData:
    """Datasets and loaders for a run; sets ``cfg.model.num_classes`` from the data."""
    if cfg.data.layout == "synthetic_stream":
        return _prepare_stream(cfg, dinfo, device, say)
    is_main = dinfo.is_main
    train_samples, classes = _samples(cfg, "train")
    test_samples: list = []
    try:
        test_samples, test_classes = _samples(cfg, "test")
    except DatasetError as exc:
        say(f"no test split ({exc}); only the validation split will be reported")
        test_classes = classes
    if list(test_classes) != list(classes):
        raise DatasetError(f"the test split's classes {test_classes[:5]}... differ from the training classes "
                           f"{classes[:5]}...")
    if resume_labels is not None and list(classes) != resume_labels:
        raise DatasetError(f"--resume: the dataset's classes differ from the run's labels "
                           f"({len(classes)} vs {len(resume_labels)} classes)")
    if cfg.model.num_classes != len(classes):
        say(f"model.num_classes {cfg.model.num_classes} -> {len(classes)} (classes found in the data)")
        cfg.model.num_classes = len(classes)
    cfg.validate()
    split = _split(cfg, run_dir, train_samples, test_samples, classes, is_main, resumed, say)

    bad_log = run_dir / "bad_videos.txt" if is_main else None
    sub = progress and is_main

    def dataset(samples, train: bool, what: str):
        ds = VideoClipDataset(samples, classes, cfg.data, train=train, seed=cfg.seed, bad_log=bad_log)
        say(f"{what} videos: {scan_dataset(ds, progress=sub, desc=f'checking {what} videos').summary}")
        return ds

    train_ds = dataset(split.train, True, "training")
    val_ds = dataset(split.val, False, "validation") if split.val else None
    test_ds = dataset(test_samples, False, "test") if test_samples else None
    say(f"{len(classes)} classes, {len(train_ds)} training / {len(val_ds) if val_ds else 0} validation / "
        f"{len(test_ds) if test_ds else 0} test videos; {train_ds.flip.describe(classes)}")
    if dinfo.enabled:
        from torch.utils.data.distributed import DistributedSampler

        if cfg.data.balanced:
            raise DatasetError("data.balanced is not supported under torchrun (one process per device) yet: "
                               "fine-tune few clips in one process, or set data.balanced=false")
        sampler: Any = DistributedSampler(train_ds, num_replicas=dinfo.world_size, rank=dinfo.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=False)
    elif cfg.data.balanced:
        sampler = BalancedEpochSampler([smp.label for smp in split.train], cfg.seed)
        counts = {c: 0 for c in classes}
        for smp in split.train:
            counts[classes[smp.label]] += 1
        say(f"class-balanced sampling (data.balanced): training clips per class {counts}, each class drawn about "
            f"{len(train_ds) / max(1, sum(1 for v in counts.values() if v)):.1f} times per epoch")
    else:
        sampler = EpochShuffleSampler(len(train_ds), cfg.seed)
    train_loader, val_loader, test_loader = _loaders(cfg, dinfo, device, train_ds, sampler, val_ds, test_ds)
    return RunData(classes=list(classes), train_ds=train_ds, train_sampler=sampler, train_loader=train_loader,
                   val_ds=val_ds, val_loader=val_loader, test_ds=test_ds, test_loader=test_loader,
                   fingerprints={"train": fingerprint(split.train), "val": fingerprint(split.val),
                                 "test": fingerprint(test_samples) if test_samples else ""})


def _prepare_stream(cfg, dinfo: DistInfo, device: torch.device, say: Callable[[str], None]) -> RunData:
    """``data.layout: synthetic_stream``: clips rendered per item (repflow_core.data.synthetic_stream)."""
    from .data.synthetic_stream import stream_datasets

    classes, train_ds, val_ds, test_ds = stream_datasets(cfg)
    if cfg.model.num_classes != len(classes):
        say(f"model.num_classes {cfg.model.num_classes} -> {len(classes)} (synthetic classes)")
        cfg.model.num_classes = len(classes)
    cfg.validate()
    say(f"synthetic stream: {len(classes)} classes, {len(train_ds)} training clips per epoch (new seeds each "
        f"epoch), {len(val_ds) if val_ds else 0} validation / {len(test_ds) if test_ds else 0} test clips "
        f"(fixed seeds), each a {cfg.data.clip_len}-frame window of a {cfg.synthetic.clip_frames}-frame action "
        f"timeline; geometries {cfg.synthetic.geometries} at render scale {cfg.synthetic.render_scale}, "
        f"crop {cfg.data.crop}; {train_ds.flip.describe(classes)}")
    if dinfo.enabled:
        from torch.utils.data.distributed import DistributedSampler

        sampler: Any = DistributedSampler(train_ds, num_replicas=dinfo.world_size, rank=dinfo.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=False)
    else:
        sampler = EpochShuffleSampler(len(train_ds), cfg.seed)
    train_loader, val_loader, test_loader = _loaders(cfg, dinfo, device, train_ds, sampler, val_ds, test_ds)
    syn = cfg.synthetic
    tag = f"synthetic_stream:seed={syn.seed}:gen={syn.generation}:frames={syn.clip_frames}:{','.join(syn.geometries)}"
    if syn.generation == 2 and syn.min_window_motion > 0:  # other windows than before: not the same data
        tag += f":min_window_motion={syn.min_window_motion:g}"
    return RunData(classes=list(classes), train_ds=train_ds, train_sampler=sampler, train_loader=train_loader,
                   val_ds=val_ds, val_loader=val_loader, test_ds=test_ds, test_loader=test_loader,
                   fingerprints={"train": f"{tag}:train:{syn.train_clips}", "val": f"{tag}:val:{syn.val_clips}",
                                 "test": f"{tag}:test:{syn.test_clips}"})


def _loaders(cfg, dinfo: DistInfo, device: torch.device, train_ds, sampler, val_ds, test_ds):
    """(train, validation, test) DataLoaders; evaluation sets are sharded over the ranks, never shuffled."""
    nw, pin = cfg.data.num_workers, device.type == "cuda"

    def eval_loader(ds):
        if ds is None:
            return None
        return make_loader(ds, cfg.eval_batch_size or cfg.batch_size, sampler=ShardSampler(len(ds), dinfo.rank,
                           dinfo.world_size), num_workers=nw, pin_memory=pin, seed=cfg.seed, persistent_workers=False)

    train_loader = make_loader(train_ds, cfg.batch_size, sampler=sampler, num_workers=nw, pin_memory=pin,
                               seed=cfg.seed, persistent_workers=nw > 0)
    return train_loader, eval_loader(val_ds) if cfg.eval_every > 0 else None, eval_loader(test_ds)


def final_test(run, spec) -> dict | None:
    """Evaluate the test split once with best.pt's weights (``run``: the training run); record the result."""
    d, run_dir = run.data, run.run_dir
    if d.test_loader is None or run.best_epoch is None:
        return None
    best_path = run_dir / "best.pt"
    model = run.eval_model
    if run.dinfo.is_main and not best_path.is_file():
        return None
    # best.pt holds the selected weights (EMA when on); every rank reads the same file.
    state = load_checkpoint_dict(best_path)["state_dict"]
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    try:
        res = validate(model, d.test_loader, run.steps, len(d.classes), desc="test")
    finally:
        model.load_state_dict(saved)
    test = {"acc": res["acc"], "loss": res["loss"], "n": res["n"], "epoch": run.best_epoch}
    if not run.dinfo.is_main:
        return test
    for row in run.history:
        if row["epoch"] == run.best_epoch:
            row["test_loss"], row["test_acc"] = res["loss"], res["acc"]
    write_log_csv(run_dir / "log.csv", run.history)
    write_plots(run_dir, run.history, d.classes, run.best_conf, run.best_epoch)
    atomic_write_text(run_dir / "test_confusion.json", json.dumps(
        {"classes": d.classes, "epoch": run.best_epoch, "acc": res["acc"], "loss": res["loss"], "n": res["n"],
         "confusion": res["confusion"].tolist()}) + "\n")
    for name in ("best.pt", "last.pt"):  # the summaries carry the test figure too
        raw = load_checkpoint_dict(run_dir / name)
        raw["training"] = dict(raw.get("training") or {}, test_acc=res["acc"], test_loss=res["loss"],
                               test_videos=res["n"], test_epoch=run.best_epoch,
                               stop_reason=getattr(run, "stop_reason", None))
        if raw.get("resume"):
            raw["resume"]["history"] = run.history
        atomic_save(raw, run_dir / name)
    return test
