"""Video ResNet-18s on clips ``(B, 3, T, H, W)``: R(2+1)D-18 and the 3D ResNet-18 (r3d_18).

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018. R(2+1)D factorises
every 3x3x3 convolution into a spatial (1x3x3) and a temporal (3x1x1) one whose intermediate width ``midplanes``
keeps the parameter count of the full 3D convolution; r3d_18 (the representation-flow paper's Table 6) uses the
full 3x3x3 convolutions and a 3x7x7 stem. Parameter and buffer names follow
``torchvision.models.video.resnet`` exactly, so Kinetics-400 weight files load (see :mod:`repflow_core.backbones`).
"""

from __future__ import annotations

from torch import Tensor, nn

from .backbones_common import MIN_CHANNELS, StagedBackbone, _check_num_classes, _check_width, scaled_channels


def _midplanes(inplanes: int, planes: int) -> int:
    """Width of the (2+1)D intermediate space (Tran et al. 2018, Sec. 3.5).

    Chosen so that the spatial 1x3x3 plus temporal 3x1x1 pair has about as many parameters as the
    full 3x3x3 convolution it replaces; same integer formula as torchvision.
    """
    return max(MIN_CHANNELS, (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes))


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factorised into spatial 1x3x3, BN, ReLU, temporal 3x1x1.

    Indices 0-3 are the torchvision sub-module names (``...conv1.0.0.weight`` etc.). The spatial
    convolution carries the spatial stride, the temporal one the temporal stride.
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1) -> None:
        super().__init__(
            nn.Conv3d(
                in_planes,
                midplanes,
                kernel_size=(1, 3, 3),
                stride=(1, stride, stride),
                padding=(0, padding, padding),
                bias=False,
            ),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                midplanes,
                out_planes,
                kernel_size=(3, 1, 1),
                stride=(stride, 1, 1),
                padding=(padding, 0, 0),
                bias=False,
            ),
        )


class R2Plus1dStem(nn.Sequential):
    """(2+1)D stem: spatial 1x7x7 stride (1,2,2) to 45 channels, then temporal 3x1x1 to 64.

    The 45 comes from torchvision's Kinetics-400 model (both are scaled by ``width``). No max-pooling,
    so time is not reduced in the stem.
    """

    def __init__(self, mid_planes: int = 45, out_planes: int = 64) -> None:
        super().__init__(
            nn.Conv3d(3, mid_planes, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid_planes),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_planes, out_planes, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(inplace=True),
        )


class Conv3DSimple(nn.Conv3d):
    """A full 3x3x3 convolution (torchvision's ``Conv3DSimple``, the 3D ResNet-18 of Hara et al. / Tran et al.).

    A Conv3d subclass, so its weight sits directly under the block's ``conv1.0`` (``layer1.0.conv1.0.weight``)
    as in torchvision. ``midplanes`` is accepted and ignored so both conv kinds share one signature.
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=(3, 3, 3), stride=stride, padding=padding, bias=False)


class BasicStem3D(nn.Sequential):
    """3D stem (torchvision's ``BasicStem``): 3x7x7 conv, stride (1, 2, 2), BN, ReLU; time is not reduced."""

    def __init__(self, out_planes: int = 64) -> None:
        super().__init__(
            nn.Conv3d(3, out_planes, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(inplace=True),
        )


_VIDEO_CONVS: dict[str, type[nn.Module]] = {"2plus1d": Conv2Plus1D, "3d": Conv3DSimple}


class VideoBasicBlock(nn.Module):
    """Residual block of two (2+1)D convolutions (torchvision's video ``BasicBlock``).

    As in torchvision, both convolutions use the ``midplanes`` computed from the block's *input*
    width, which matters for the first block of a stage where ``inplanes != planes``.
    """

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 conv: str = "2plus1d") -> None:
        super().__init__()
        midplanes = _midplanes(inplanes, planes)
        make = _VIDEO_CONVS[conv]
        self.conv1 = nn.Sequential(
            make(inplanes, planes, midplanes, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            make(planes, planes, midplanes),
            nn.BatchNorm3d(planes),
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class VideoResNet(StagedBackbone):
    """R(2+1)D video ResNet on clips ``(B, 3, T, H, W)``; names as ``torchvision.models.video.VideoResNet``.

    Stages 2-4 halve time as well as space (stride 2 in the temporal convolution and in the 1x1x1
    projection shortcut), so a clip of T frames leaves ``layer4`` with ``ceil(T / 8)`` time steps.
    """

    is_video = True

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        width: float = 1.0,
        num_classes: int = 400,
        conv: str = "2plus1d",
    ) -> None:
        super().__init__()
        width = _check_width(width)
        num_classes = _check_num_classes(num_classes)
        if conv not in _VIDEO_CONVS:
            raise ValueError(f"unknown video conv {conv!r}; choose one of {sorted(_VIDEO_CONVS)}")
        self.width = width
        self.conv = conv

        stem_planes = scaled_channels(64, width)
        if conv == "3d":
            self.stem: nn.Module = BasicStem3D(stem_planes)
        else:
            self.stem = R2Plus1dStem(scaled_channels(45, width), stem_planes)
        self.stage_channels = {"stem": stem_planes}
        self._inplanes = stem_planes
        self.layer1 = self._make_layer(scaled_channels(64, width), layers[0], stride=1)
        self.stage_channels["layer1"] = self._inplanes
        self.layer2 = self._make_layer(scaled_channels(128, width), layers[1], stride=2)
        self.stage_channels["layer2"] = self._inplanes
        self.layer3 = self._make_layer(scaled_channels(256, width), layers[2], stride=2)
        self.stage_channels["layer3"] = self._inplanes
        self.layer4 = self._make_layer(scaled_channels(512, width), layers[3], stride=2)
        self.stage_channels["layer4"] = self._inplanes
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.feature_dim = self.stage_channels["layer4"]
        self.fc = nn.Linear(self.feature_dim, num_classes)

        # torchvision's VideoResNet init: He normal (fan_out) convolutions, BN as identity,
        # fc ~ N(0, 0.01) with zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != planes * VideoBasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self._inplanes,
                    planes * VideoBasicBlock.expansion,
                    kernel_size=1,
                    stride=(stride, stride, stride),
                    bias=False,
                ),
                nn.BatchNorm3d(planes * VideoBasicBlock.expansion),
            )
        modules: list[nn.Module] = [VideoBasicBlock(self._inplanes, planes, stride, downsample, conv=self.conv)]
        self._inplanes = planes * VideoBasicBlock.expansion
        modules.extend(VideoBasicBlock(self._inplanes, planes, conv=self.conv) for _ in range(1, blocks))
        return nn.Sequential(*modules)

    def _run_stage(self, name: str, x: Tensor) -> Tensor:
        return getattr(self, name)(x)


def r2plus1d_18(width: float = 1.0, num_classes: int = 400) -> VideoResNet:
    """R(2+1)D-18 (Tran et al. 2018); 31,505,325 parameters at ``width=1`` like torchvision's."""
    return VideoResNet((2, 2, 2, 2), width=width, num_classes=num_classes)


def r3d_18(width: float = 1.0, num_classes: int = 400) -> VideoResNet:
    """3D ResNet-18 (Tran et al. 2018; the paper's Table 6); 33,371,472 parameters at ``width=1`` like torchvision's."""
    return VideoResNet((2, 2, 2, 2), width=width, num_classes=num_classes, conv="3d")
