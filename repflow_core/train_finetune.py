"""Fine-tuning from few clips (issue 10.3): frozen backbone stages, class-balanced sampling, early stopping.

Used by :mod:`repflow_core.train` when the config asks for it (``config/finetune.yaml``)::

    freeze: [stem, layer1]          # these stages keep the weights --init-from gave them
    freeze_until: layer2            # or: every stage up to and including this one (forward order)
    early_stopping_patience: 4      # stop after 4 validated epochs without a better validation accuracy
    data:
      balanced: true                # every epoch draws the classes evenly (few clips, unequal counts)

* **Frozen stages** keep their parameters *and* their BatchNorm statistics bit-identical: the parameters get
  ``requires_grad=False`` (so they are left out of the optimiser: no weight decay, no momentum), and their
  BatchNorm layers are put back in eval mode after every ``model.train()`` (a BatchNorm in train mode
  would normalise with the few clips' batch statistics and move its running estimates;
  ``train_loop.keep_frozen_bn_eval``), and are skipped by the BatchNorm re-estimation before validation.
* **Balanced sampling** (:class:`BalancedEpochSampler`): with 3 clips of one class and 20 of another, a plain
  shuffle shows the big class 7x as often and the classifier learns its prior. Each epoch draws
  ``len(dataset)`` indices with the classes as even as the count allows (remainder spread over classes in a
  seeded order); within a class the clips are taken in a seeded permutation, cycled when the class is small.
  Depends only on (seed, epoch), like the plain shuffle, so a resumed run sees the same batches.
* **Early stopping** (:class:`EarlyStopping`): the validation split (carved automatically from the training
  clips, data/splits.py) is the held-out data; after ``patience`` validated epochs without a new best
  validation accuracy the run stops, records why (printed, in ``train.log`` and as ``stop_reason`` in the
  checkpoints' training summary; a ``--resume`` of a stopped run trains no further) and tests ``best.pt`` as a
  complete run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Sampler

from .train_loop import derive_seed

__all__ = ["STAGE_PREFIXES", "BalancedEpochSampler", "EarlyStopping", "freeze_stages", "frozen_batchnorm_names",
           "resolve_frozen_stages", "stage_order"]

# Stage name -> state_dict prefixes of ActionNet (torchvision key names under ``backbone.``).
STAGE_PREFIXES: dict[str, tuple[str, ...]] = {
    "stem": ("backbone.conv1.", "backbone.bn1."),
    "layer1": ("backbone.layer1.",),
    "layer2": ("backbone.layer2.",),
    "layer3": ("backbone.layer3.",),
    "layer4": ("backbone.layer4.",),
    "flow": ("flow.",),
    "fc": ("backbone.fc.",),
}


def stage_order(flow_after: str) -> list[str]:
    """The stages in forward order: the flow block runs after ``flow_after`` (model.flow_after); ``input`` puts
    it before the stem (the flow of the frames themselves)."""
    order = ["stem", "layer1", "layer2", "layer3", "layer4"]
    if flow_after == "input":
        pos = 0
    else:
        pos = order.index(flow_after) + 1 if flow_after in order else 1
    return order[:pos] + ["flow"] + order[pos:] + ["fc"]


def resolve_frozen_stages(freeze: Sequence[str], freeze_until: str, flow_after: str) -> list[str]:
    """The stages to freeze from ``freeze`` (names) and ``freeze_until`` (a stage: it and all before it).
    Unknown names raise ValueError naming the culprit and the valid names."""
    order = stage_order(flow_after)
    for name in list(freeze) + ([freeze_until] if freeze_until else []):
        if name not in STAGE_PREFIXES:
            key = "freeze_until" if name == freeze_until and name not in freeze else "freeze"
            raise ValueError(f"unknown stage {name!r} in {key}; valid stages (forward order): {', '.join(order)}")
    chosen = set(freeze)
    if freeze_until:
        chosen.update(order[: order.index(freeze_until) + 1])
    if "fc" in chosen and len(chosen) == len(order):
        raise ValueError("freeze/freeze_until freeze every stage, classifier included: nothing would train")
    return [s for s in order if s in chosen]


def _prefixes(stages: Sequence[str]) -> tuple[str, ...]:
    return tuple(p for s in stages for p in STAGE_PREFIXES[s])


def freeze_stages(model: nn.Module, stages: Sequence[str]) -> str:
    """``requires_grad=False`` on every parameter of ``stages``; returns a summary line. Raises ValueError
    when a stage has no parameter in ``model`` (e.g. ``flow`` on a model without a flow block, or UF-TSN)."""
    prefixes = _prefixes(stages)
    frozen = 0
    for stage in stages:
        params = [p for n, p in model.named_parameters() if n.startswith(STAGE_PREFIXES[stage])]
        if not params:
            raise ValueError(f"freeze: stage {stage!r} has no parameters in this model "
                             f"({type(model).__name__}); freezing applies to ActionNet stages")
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    total = sum(p.numel() for p in model.parameters())
    return (f"frozen stages {', '.join(stages)}: {frozen / 1e6:.3f} M of {total / 1e6:.3f} M parameters "
            f"(their BatchNorm statistics fixed too)")


def frozen_batchnorm_names(model: nn.Module, stages: Sequence[str]) -> list[str]:
    """Module names of the BatchNorm layers inside ``stages`` (kept in eval mode, never re-estimated)."""
    prefixes = _prefixes(stages)
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and (n + ".").startswith(prefixes)]


class BalancedEpochSampler(Sampler[int]):
    """``len(labels)`` indices per epoch with every class drawn as evenly as the count allows.

    Per epoch: each of the K present classes gets ``n // K`` draws, the ``n % K`` left over go to classes in
    a seeded order; a class's draws walk through seeded permutations of its clips (a new permutation each
    time the class is exhausted), so within an epoch a class repeats a clip only after showing all of
    them. The final order is shuffled. Everything depends only on (seed, epoch).
    """

    def __init__(self, labels: Sequence[int], seed: int) -> None:
        self.labels = [int(v) for v in labels]
        if not self.labels:
            raise ValueError("BalancedEpochSampler: no training clips")
        self.seed, self.epoch = int(seed), 0
        self.by_class: dict[int, list[int]] = {}
        for i, y in enumerate(self.labels):
            self.by_class.setdefault(y, []).append(i)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, "balanced", self.epoch))
        classes = sorted(self.by_class)
        n, k = len(self.labels), len(classes)
        counts = {c: n // k for c in classes}
        for j in torch.randperm(k, generator=g)[: n % k].tolist():
            counts[classes[j]] += 1
        drawn: list[int] = []
        for c in classes:
            members = self.by_class[c]
            while counts[c] > 0:
                take = min(counts[c], len(members))
                drawn.extend(members[j] for j in torch.randperm(len(members), generator=g)[:take].tolist())
                counts[c] -= take
        return iter([drawn[j] for j in torch.randperm(len(drawn), generator=g).tolist()])


@dataclass
class EarlyStopping:
    """Stop after ``patience`` validated epochs without a better validation accuracy (0 = off)."""

    patience: int
    bad_epochs: int = 0

    def update(self, improved: bool) -> bool:
        """Record one validated epoch; True when the run should stop now."""
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    def reason(self, epoch: int, best_epoch: int | None, best_acc: float | None) -> str:
        best = f"{best_acc * 100:.2f}% at epoch {best_epoch}" if best_acc is not None else "none"
        return (f"early stopping after epoch {epoch}: {self.bad_epochs} validated epoch(s) without a better "
                f"validation accuracy (patience {self.patience}; best {best})")
