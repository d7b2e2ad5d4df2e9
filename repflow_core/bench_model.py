"""The ``model`` suite of :mod:`repflow_core.bench`: whole-network window latency per flow variant.

Variants: ``flow-eager``, ``flow-fused`` (the fused flow kernels), ``fused+channels_last`` and
``fused+cl+compile`` (``torch.compile`` after channels-last, with inductor freezing on CPU), timed interleaved on
one clip so machine noise hits every variant alike; also the max logit difference to the first variant and the
process' peak memory. Reached through ``bench.run_case`` (lazily: this module imports ``bench``'s helpers);
kept apart to keep ``bench.py`` under the module size limit (issue 8).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict

import torch

from .bench import Case, _peak_rss_mb, _reset_peak_rss, _rss_mb, interleaved_ms, small_model_config


def _channels_last(model: torch.nn.Module) -> torch.nn.Module:
    from .recognizer import _to_channels_last

    _to_channels_last(model)
    return model


def run_model(case: Case, device: torch.device) -> list[dict]:
    """Time every variant of ``case.impls`` on the small or the ResNet-50 network; one row per variant."""
    from . import kernels
    from .model import ActionNet, ModelConfig

    if case.model == "small":
        cfg = small_model_config()
    else:
        cfg = ModelConfig(backbone="resnet50", width=1.0, num_classes=400, flow="single",
                          flow_after="layer2", iterations=20)
    torch.manual_seed(0)
    base = ActionNet(cfg).to(device).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    clip = torch.randn(1, 3, case.frames, case.size, case.size, device=device)
    models: dict[str, torch.nn.Module] = {}
    compile_s: dict[str, float] = {}
    for variant in case.impls:
        if variant == "flow-eager":
            models[variant] = kernels.make_fused(copy.deepcopy(base), "eager")
        elif variant == "flow-fused":
            models[variant] = kernels.make_fused(copy.deepcopy(base), "fused")
        elif variant == "fused+channels_last":
            models[variant] = _channels_last(kernels.make_fused(copy.deepcopy(base), "fused"))
        elif variant == "fused+cl+compile":
            model = torch.compile(_channels_last(kernels.make_fused(copy.deepcopy(base), "fused")), dynamic=False)
            start = time.perf_counter()
            import torch._inductor.config as inductor_config

            with inductor_config.patch(freezing=device.type == "cpu"), torch.inference_mode():
                model(clip)
            compile_s[variant] = time.perf_counter() - start
            models[variant] = model
        else:
            raise ValueError(f"unknown model variant {variant!r}")

    def forward(model):
        def fn():
            with torch.inference_mode():
                model(clip)
        return fn

    _reset_peak_rss()
    base_rss = _rss_mb()
    times = interleaved_ms({v: forward(m) for v, m in models.items()}, case.repeats, device, case.budget_s)
    with torch.inference_mode():
        ref = models[case.impls[0]](clip)
        diffs = {v: (m(clip) - ref).abs().max().item() for v, m in models.items()}
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else max(0.0, _peak_rss_mb() - base_rss))
    name = f"{cfg.backbone} x{cfg.width} flow={cfg.flow}@{cfg.flow_after} it={cfg.iterations}"
    return [{**asdict(case), "impl": v, "window_ms": statistics.median(times[v]), "window_samples_ms": times[v],
             "max_abs_logit_diff": diffs[v],
             "compile_s": compile_s.get(v), "process_peak_mb": peak, "model_name": name} for v in case.impls]
