"""The CNNs that read KCAPTCHA, and a name -> builder table (like timm's registry).

A model takes the decoded image itself, ``uint8 [batch, height, width, 3]``,
and does its own preprocessing, so ONNX, TF.js and PyTorch all see the same
arithmetic. It returns logits ``[batch, steps, classes + 1]``, one softmax per
step, where the extra last class means "no character here". Two readings of
the steps (``decoder``, stored in every model file):

* ``positions``: step k is character k; the string ends at the first "none"
  (how a 5-character string fills a 7-position head). Best for fixed layouts.
* ``ctc``: one step per 4- or 8-pixel column strip, read left to right;
  repeats collapse and "none" is the CTC blank. Best when glyphs overlap and
  the length varies, because nothing has to count glyphs.

Layers are limited to what the TF.js exporter writes: Conv2d + BatchNorm2d +
ReLU + MaxPool2d blocks, a flatten or per-column reshape, Linear layers.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import ConfigError, ModelError, did_you_mean


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


def conv_blocks(channels: tuple[int, ...], pools: tuple[tuple[int, int], ...]) -> list[nn.Module]:
    """3x3 conv + BN + ReLU + max-pool blocks from one gray channel."""
    layers: list[nn.Module] = []
    c_in = 1
    for c_out, pool in zip(channels, pools, strict=True):
        layers += [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pool),
        ]
        c_in = c_out
    return layers


def to_gray(image: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 1, H, W) gray in [-1, 1]: the in-graph preprocessing.

    The channel axis is dropped before the arithmetic, not kept as size 1:
    onnxruntime 1.32 runs a scalar Mul on a trailing axis of size 1 about 20x
    slower (150 us instead of 7 for 160x60), a third of the whole model's time.
    """
    return (image.float().mean(dim=3) * (1 / 127.5) - 1.0).unsqueeze(1)


class CaptchaCNN(nn.Module):
    """Conv blocks that halve the picture, a 1x1 squeeze, then one linear layer per string.

    The linear layer sees the whole (small) feature map, so each output position
    learns where its character tends to sit: KCAPTCHA places glyphs left to right
    from x = 1, so positions are nearly fixed.
    """

    decoder = "positions"

    def __init__(self, spec: ModelSpec, channels: tuple[int, ...], squeeze: int, dropout: float) -> None:
        super().__init__()
        self.spec = spec
        h, w = spec.height >> len(channels), spec.width >> len(channels)
        layers = conv_blocks(channels, ((2, 2),) * len(channels))
        layers += [nn.Conv2d(channels[-1], squeeze, 1, bias=False), nn.BatchNorm2d(squeeze), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(squeeze * h * w, spec.positions * (len(spec.classes) + 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features(to_gray(image))  # (B, squeeze, h, w)
        x = self.head(self.dropout(x.flatten(1)))
        return x.view(x.shape[0], self.spec.positions, len(self.spec.classes) + 1)


class CaptchaCTC(nn.Module):
    """Conv blocks down to 1/``step`` of the width, then one linear classifier per column (CTC).

    Blocks past the first log2(step) pool only the height. Two glyphs need
    their own steps, and a repeated symbol a blank step between them, so
    ``step`` must be well under the distance between glyph centres: for
    kcaptcha-default (no spaces) 8 px is too coarse for 6.6 % of strings, 4 px
    for 0.2 % (benchmarks/ctc_spacing.py). The classifier sees the whole
    column (every row, every channel).
    """

    decoder = "ctc"

    def __init__(self, spec: ModelSpec, channels: tuple[int, ...], dropout: float, step: int) -> None:
        super().__init__()
        self.spec = spec
        halvings = step.bit_length() - 1
        pools = tuple((2, 2) if i < halvings else (2, 1) for i in range(len(channels)))
        self.features = nn.Sequential(*conv_blocks(channels, pools))
        self.rows = spec.height >> len(channels)
        self.steps = spec.width >> halvings
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.rows * channels[-1], len(spec.classes) + 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features(to_gray(image))  # (B, C, rows, steps)
        x = x.permute(0, 3, 2, 1).flatten(2)  # (B, steps, rows * C), rows-major like NHWC
        return self.head(self.dropout(x))


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


@register("ctc-small")
def ctc_small(spec: ModelSpec) -> nn.Module:
    """The first variable-length reader: about 90k parameters, 20 CTC steps over 160 px."""
    return CaptchaCTC(spec, channels=(16, 32, 64, 96), dropout=0.1, step=8)


@register("ctc-fine")
def ctc_fine(spec: ModelSpec) -> nn.Module:
    """``ctc-small``'s weights with 40 steps over 160 px, so packed glyphs each get a step."""
    return CaptchaCTC(spec, channels=(16, 32, 64, 96), dropout=0.1, step=4)


@register("ctc-wide")
def ctc_wide(spec: ModelSpec) -> nn.Module:
    """``ctc-fine`` with 1.5x the channels (about 180k parameters): for training on a GPU."""
    return CaptchaCTC(spec, channels=(24, 48, 96, 128), dropout=0.1, step=4)


@register("ctc-any")
def ctc_any(spec: ModelSpec) -> nn.Module:
    """The general model's reader (issue 13): about 330k parameters (0.67 MB as float16 ONNX), 48 CTC steps
    over 192 px. A fifth block widens each column's view to 34 px, a glyph and its neighbours' edges, as glyph
    sizes vary with the configuration; the first blocks stay narrow, as at 192x64 they cost most of the time
    (benchmarks/any_input.py --speed: one onnxruntime thread, untrained network)."""
    return CaptchaCTC(spec, channels=(16, 32, 64, 128, 192), dropout=0.1, step=4)


@register("ctc-tiny")
def ctc_tiny(spec: ModelSpec) -> nn.Module:
    """A few thousand parameters: for tests of the CTC path, not for accuracy."""
    return CaptchaCTC(spec, channels=(8, 16, 24, 32), dropout=0.0, step=8)


def greedy_decode(logits: torch.Tensor, decoder: str, blank: int) -> list[list[int]]:
    """Class indices of each string: up to the first blank (positions) or collapsed (ctc)."""
    best = logits.argmax(-1).tolist()
    out = []
    for row in best:
        if decoder == "positions":
            out.append(row[: row.index(blank)] if blank in row else row)
        else:
            out.append([c for k, c in enumerate(row) if c != blank and (k == 0 or c != row[k - 1])])
    return out


def build(spec: ModelSpec) -> nn.Module:
    """The network named by ``spec.arch``; ConfigError (with "did you mean") for an unknown name."""
    if spec.arch not in ARCHS:
        hint = did_you_mean(spec.arch, ARCHS)
        raise ConfigError(f"unknown architecture {spec.arch!r} (known: {', '.join(ARCHS)}){hint}")
    return ARCHS[spec.arch](spec)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, dict]:
    """A model in eval mode and the checkpoint dict it came from (``train.save_checkpoint`` writes them);
    ModelError when the file is missing or not one of ours."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model = build(ModelSpec(**ckpt["spec"]))
        model.load_state_dict(ckpt["model"])
    except FileNotFoundError:
        raise ModelError(f"checkpoint not found: {path}") from None
    except (KeyError, RuntimeError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{path} is not a kcaptcha-solver checkpoint ({type(exc).__name__}: {exc})") from None
    model.eval()
    return model, ckpt
