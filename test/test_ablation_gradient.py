"""The ablation runner's ``gradient`` study (issue 16): only the flow layer's gradient kind and pyramid depth
change between its variants; flow, location and fusion stay the config's."""

import pytest

from repflow_core.experiments import ablation
from repflow_core.model import ModelConfig


def test_gradient_study_variants_change_only_the_flow_kind():
    assert ablation.study_variants("gradient", []) == ["sobel", "sobel_fd", "sobel_fd_pyr2"]
    name, fields = ablation.variant_overrides("sobel_fd_pyr2")
    assert fields == {"gradient": "sobel_fd", "pyramid_levels": 2} and "pyramid" in name
    assert ablation.variant_overrides("sobel")[1] == {"gradient": "sobel", "pyramid_levels": 1}
    cfg = ModelConfig(flow_after="layer1")
    for key in ("sobel", "sobel_fd", "sobel_fd_pyr2", "sobel_fd_pyr3"):
        for field, value in ablation.variant_overrides(key)[1].items():
            setattr(cfg, field, value)
        cfg.validate()
        assert cfg.flow_after == "layer1" and cfg.flow == "single"


def test_unknown_variant_names_the_gradient_keys():
    with pytest.raises(ValueError, match="sobel_fd_pyr2"):
        ablation.variant_overrides("sobel_pyr9")
