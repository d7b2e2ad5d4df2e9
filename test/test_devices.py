"""One device parser and one precision rule (repflow_core.devices)."""

import pytest
import torch

from repflow_core.devices import DeviceError, check_device_spec, check_precision, resolve_device


def test_device_specs():
    assert check_device_spec(" CUDA:1 ") == "cuda:1" and check_device_spec("") == "auto"
    with pytest.raises(DeviceError, match="'gpu'"):
        check_device_spec("gpu")
    assert resolve_device("cpu") == torch.device("cpu")
    seen = []
    resolve_device("auto", log=seen.append)
    assert seen and "auto" in seen[0]
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_precision_rule():
    cpu = torch.device("cpu")
    assert check_precision("fp32", cpu) is None and check_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(DeviceError, match="fp16.*needs CUDA"):
        check_precision("fp16", cpu)
    with pytest.raises(DeviceError, match="fp8"):
        check_precision("fp8", cpu)
