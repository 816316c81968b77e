"""The CNNs that read KCAPTCHA, and a name -> builder table (like timm's registry).

A model takes the decoded image itself, ``uint8 [batch, height, width, 3]``,
and does its own preprocessing, so ONNX, TF.js and PyTorch all see the same
arithmetic. It returns logits ``[batch, positions, classes + 1]``: one softmax
per character position, where the extra last class means "no character here"
(how a 5-character string fills a 7-position head).

Layers are limited to what the TF.js exporter writes: Conv2d + BatchNorm2d +
ReLU + MaxPool2d blocks, a flatten, Linear layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What a network needs to know about its task; stored in checkpoints and model files."""

    arch: str
    height: int  # full image height, credits strip included
    width: int
    positions: int  # longest string
    classes: str  # the symbols, in output order; index len(classes) is "none"

    def to_dict(self) -> dict:
        return asdict(self)


class CaptchaCNN(nn.Module):
    """Conv blocks that halve the picture, a 1x1 squeeze, then one linear layer per string.

    The linear layer sees the whole (small) feature map, so each output position
    learns where its character tends to sit: KCAPTCHA places glyphs left to right
    from x = 1, so positions are nearly fixed.
    """

    def __init__(self, spec: ModelSpec, channels: tuple[int, ...], squeeze: int, dropout: float) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        c_in, h, w = 1, spec.height, spec.width
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in, h, w = c_out, h // 2, w // 2
        layers += [nn.Conv2d(c_in, squeeze, 1, bias=False), nn.BatchNorm2d(squeeze), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(squeeze * h * w, spec.positions * (len(spec.classes) + 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # image: (B, H, W, 3) uint8 -> gray in [-1, 1], (B, 1, H, W)
        x = image.float().mean(dim=3, keepdim=True) * (1 / 127.5) - 1.0
        x = x.permute(0, 3, 1, 2)
        x = self.features(x)  # (B, squeeze, h, w)
        x = self.head(self.dropout(x.flatten(1)))
        return x.view(x.shape[0], self.spec.positions, len(self.spec.classes) + 1)


ARCHS: dict[str, Callable[[ModelSpec], nn.Module]] = {}


def register(name: str):
    """Add a builder to the table under ``name``."""

    def wrap(fn: Callable[[ModelSpec], nn.Module]) -> Callable[[ModelSpec], nn.Module]:
        ARCHS[name] = fn
        return fn

    return wrap


@register("cnn-tiny")
def cnn_tiny(spec: ModelSpec) -> nn.Module:
    """About 30k parameters: for CI's end-to-end run, not for accuracy."""
    return CaptchaCNN(spec, channels=(8, 16, 24, 32), squeeze=8, dropout=0.0)


@register("cnn-small")
def cnn_small(spec: ModelSpec) -> nn.Module:
    """The shipped architecture: about 150k parameters, ~0.3 MB as float16."""
    return CaptchaCNN(spec, channels=(16, 32, 64, 96), squeeze=32, dropout=0.1)


def build(spec: ModelSpec) -> nn.Module:
    """The network named by ``spec.arch``."""
    try:
        return ARCHS[spec.arch](spec)
    except KeyError:
        raise ValueError(f"unknown architecture '{spec.arch}' (known: {', '.join(ARCHS)})") from None
