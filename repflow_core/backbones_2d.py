"""2D ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), applied per frame.

Parameter and buffer names follow ``torchvision.models.resnet`` exactly (see :mod:`repflow_core.backbones`).
"""

from __future__ import annotations

from torch import Tensor, nn

from .backbones_common import StagedBackbone, _check_num_classes, _check_width, scaled_channels


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4; ResNet-50.

    The stride sits on the 3x3 convolution as in torchvision ("ResNet v1.5"), not on the first 1x1
    convolution as in the original paper; the parameter count is the same, the accuracy slightly higher.
    """

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(StagedBackbone):
    """2D ResNet applied frame by frame to ``(N, 3, H, W)``.

    Attribute names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``downsample.0/.1``, ``fc``) match
    ``torchvision.models.ResNet``. The "stem" stage is ``conv1 -> bn1 -> relu -> maxpool``.
    """

    is_video = False

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        width: float = 1.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        width = _check_width(width)
        num_classes = _check_num_classes(num_classes)
        self.width = width

        stem_planes = scaled_channels(64, width)
        self.conv1 = nn.Conv2d(3, stem_planes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_planes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage_channels = {"stem": stem_planes}
        self._inplanes = stem_planes
        self.layer1 = self._make_layer(block, scaled_channels(64, width), layers[0], stride=1)
        self.stage_channels["layer1"] = self._inplanes
        self.layer2 = self._make_layer(block, scaled_channels(128, width), layers[1], stride=2)
        self.stage_channels["layer2"] = self._inplanes
        self.layer3 = self._make_layer(block, scaled_channels(256, width), layers[2], stride=2)
        self.stage_channels["layer3"] = self._inplanes
        self.layer4 = self._make_layer(block, scaled_channels(512, width), layers[3], stride=2)
        self.stage_channels["layer4"] = self._inplanes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = self.stage_channels["layer4"]
        self.fc = nn.Linear(self.feature_dim, num_classes)

        # torchvision's init: He (kaiming) normal with fan_out for convolutions, BN as identity.
        # The fc layer keeps nn.Linear's default init, as in torchvision.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules: list[nn.Module] = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        modules.extend(block(self._inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*modules)

    def _run_stage(self, name: str, x: Tensor) -> Tensor:
        if name == "stem":
            return self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return getattr(self, name)(x)


def resnet18(width: float = 1.0, num_classes: int = 1000) -> ResNet:
    """ResNet-18 (He et al. 2016); 11,689,512 parameters at ``width=1`` like torchvision's."""
    return ResNet(BasicBlock, (2, 2, 2, 2), width=width, num_classes=num_classes)


def resnet34(width: float = 1.0, num_classes: int = 1000) -> ResNet:
    """ResNet-34 (He et al. 2016); 21,797,672 parameters at ``width=1`` like torchvision's."""
    return ResNet(BasicBlock, (3, 4, 6, 3), width=width, num_classes=num_classes)


def resnet50(width: float = 1.0, num_classes: int = 1000) -> ResNet:
    """ResNet-50 (He et al. 2016, v1.5 strides); 25,557,032 parameters at ``width=1`` like torchvision's."""
    return ResNet(Bottleneck, (3, 4, 6, 3), width=width, num_classes=num_classes)
