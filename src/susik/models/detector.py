"""The formula detector: a compact DB-style segmentation net with a page-orientation head.

One pass over a downscaled page gives
- `maps` (N, 2, H/2, W/2) logits: channel 0 the shrunk formula kernel (a region's polygon moved inwards, so
  neighbouring formulas stay apart; postprocessing grows each blob back), channel 1 handwritten-vs-printed,
  read inside formula pixels only;
- `orientation` (N, 4) logits: the page is turned 0/90/180/270 degrees clockwise from upright.

The backbone uses plain 3x3 convolutions at strides 2-8 (few channels, many pixels: on CPU a dense conv beats
an inverted residual's expanded activations there) and MobileNetV2-like inverted residuals at strides 16-32
(many channels, few pixels), so it trains on one CPU thread and runs in tens of milliseconds. An FPN-lite
merges strides 4..32 by addition at stride 4, and a transposed convolution lifts the head to stride 2, where
a 12-px-high formula still has a few pixels of kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from susik.runtime.orient import ORIENTATIONS


class DetectorConfig(BaseModel):
    """The net's shape; checkpoints and the bundled model's record carry it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Channels at strides 2, 4, 8, 16, 32: narrow early (most pixels), wider late (most context).
    widths: tuple[int, int, int, int, int] = (16, 24, 48, 80, 128)
    # Blocks per stage (stage 0 is the stem alone: a block at stride 2 cost a third of the net's time); the
    # deep stages carry the context that tells a formula from a line of text.
    depths: tuple[int, int, int, int, int] = (0, 1, 2, 3, 2)
    plain_stages: int = 3  # the first stages use dense 3x3 convs (measured ~2x faster to train on CPU)
    expand: int = 3  # inverted-residual expansion; 3 instead of MobileNet's 6 halves the cost
    fpn: int = 32  # channels of the merged pyramid
    head: int = 16  # channels after the stride-2 upsampling
    # Depthwise kernel in the last two stages: 5x5 widens the receptive field cheaply.
    deep_kernel: int = 5


def _conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int, kernel: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.body = nn.Sequential(
            _conv_bn(c_in, hidden),
            _conv_bn(hidden, hidden, kernel, stride, groups=hidden),
            _conv_bn(hidden, c_out, act=False),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class PlainBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = _conv_bn(c_in, c_out, 3, stride)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class FormulaDetector(nn.Module):
    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__()
        config = config or DetectorConfig()
        self.config = config
        w = config.widths
        self.stem = _conv_bn(3, w[0], 3, 2)
        stages = []
        c_in = w[0]
        for index, (width, depth) in enumerate(zip(w, config.depths, strict=True)):
            kernel = config.deep_kernel if index >= 3 else 3
            blocks = []
            for block in range(depth):
                stride = 2 if block == 0 and index > 0 else 1
                if index < config.plain_stages:
                    blocks.append(PlainBlock(c_in, width, stride))
                else:
                    blocks.append(InvertedResidual(c_in, width, stride, config.expand, kernel))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList([_conv_bn(width, config.fpn) for width in w[1:]])
        self.smooth = nn.Sequential(
            _conv_bn(config.fpn, config.fpn, 3, groups=config.fpn), _conv_bn(config.fpn, config.fpn)
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(config.fpn, config.head, 2, 2, bias=False),
            nn.BatchNorm2d(config.head),
            nn.ReLU(inplace=True),
        )
        self.maps = nn.Conv2d(config.head, 2, 1)
        self.orientation = nn.Linear(2 * w[-1], len(ORIENTATIONS))
        with torch.no_grad():  # formulas cover a few percent of a page: start the kernel logit there
            self.maps.bias.copy_(torch.tensor([-3.0, 0.0]))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images: (N, 3, H, W) normalised, H and W multiples of 32 -> (maps, orientation logits)."""
        x = self.stem(images)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        pyramid = features[1:]  # strides 4, 8, 16, 32
        merged = self.lateral[-1](pyramid[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(pyramid[:-1]), strict=True):
            merged = lateral(feature) + F.interpolate(merged, size=feature.shape[-2:], mode="nearest")
        maps = self.maps(self.up(self.smooth(merged)))
        deepest = features[-1]
        pooled = torch.cat([deepest.mean(dim=(2, 3)), deepest.amax(dim=(2, 3))], dim=1)
        return maps, self.orientation(pooled)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
