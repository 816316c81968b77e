"""Read KCAPTCHA images with an exported model: onnxruntime, numpy and Pillow only.

This module never imports torch or training code, so ``pip install kcaptcha-solver``
is enough to solve. Everything a model needs (symbols, lengths, input size) is
read from the model file's metadata, so any exported ``.onnx`` works.

>>> Solver("gnuboard5").solve("captcha.jpg").text
'480316'

Errors: a corrupt, empty, oversized or non-image input raises
:class:`~kcaptcha_solver.errors.ImageError`; a missing, unknown or foreign model
raises :class:`~kcaptcha_solver.errors.ModelError`.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, UnidentifiedImageError

from .errors import ImageError, ModelError

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "gnuboard5"
FORMAT_VERSION = "1"  # the kcaptcha.format this reader understands (written by export.py)
DECODERS = ("positions", "ctc")
# Refuse images whose header declares more pixels than this, before decoding them. Captchas are
# ~160x92; 1 MP leaves room for screenshots yet keeps one decode under ~3 MB of RGB.
MAX_PIXELS = 1_000_000
# What captchas are served as. Fewer decoders also means less parser surface for a public service.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
LOW_CONFIDENCE = 0.9  # characters below this get alternatives
ALTERNATIVE_MIN = 0.02  # ...listing the other symbols at least this likely
ALTERNATIVES_MAX = 3
# "auto" among same-size models: KCAPTCHA glyphs advance ~18 px each (14-24 px across the three fonts),
# so the ink width says the string length. Real 160x60 images: 2 digits span 24-54 px, 6 digits 99-143 px.
CHAR_WIDTH = 18.0
CARD_ACCURACY = re.compile(r"^[\W_]*accuracy[\W_]*?:?[*_\s|]*([0-9]+(?:\.[0-9]+)?)\s*%", re.I | re.M)

ImageInput = bytes | bytearray | memoryview | str | os.PathLike | Image.Image | np.ndarray


@dataclass(frozen=True)
class ModelInfo:
    """A model file and the metadata it carries."""

    name: str
    path: Path
    preset: str
    arch: str
    classes: str
    length_min: int
    length_max: int
    width: int
    height: int
    decoder: str  # "positions" (step k is character k) or "ctc" (column steps; see model.py)
    bytes: int  # file size
    accuracy: float | None  # % on the real PHP sample, from the model card NAME.md next to the file

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class Result:
    """One solved image.

    ``confidence[i]`` is the model's probability for ``text[i]``; ``alternatives[i]``
    lists up to three other (symbol, probability) pairs for a character below
    ``LOW_CONFIDENCE`` (empty when the character is sure; symbol "" means the string
    may end there). ``ms`` is this image's share of the call, decoding included.
    ``resized`` says the input was not the model's size.
    """

    text: str
    confidence: tuple[float, ...]
    alternatives: tuple[tuple[tuple[str, float], ...], ...]
    model: str
    ms: float
    resized: bool

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "confidence": list(self.confidence),
            "alternatives": [[list(a) for a in alts] for alts in self.alternatives],
            "model": self.model,
            "ms": self.ms,
            "resized": self.resized,
        }


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Metadata of an exported model; ModelError when the file is missing or not one of ours."""
    return _load(Path(path), threads=1)[1]


def card_accuracy(card: Path) -> float | None:
    """The full-string accuracy a model card records on a line ``accuracy: 99.80%`` (markdown allowed)."""
    if not card.is_file():
        return None
    found = CARD_ACCURACY.search(card.read_text(encoding="utf-8", errors="replace"))
    return float(found.group(1)) if found else None


def shipped_models() -> dict[str, ModelInfo]:
    """The models inside the package, name -> info (what ``Solver(name)`` accepts)."""
    return {p.stem: read_model_info(p) for p in sorted(MODELS_DIR.glob("*.onnx"))}


def _load(path: Path, threads: int) -> tuple[ort.InferenceSession, ModelInfo]:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # onnxruntime's warnings are not for our users
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable files
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    meta = session.get_modelmeta().custom_metadata_map
    fmt = meta.get("kcaptcha.format")
    if fmt is None:
        raise ModelError(f"{path} has no kcaptcha metadata: export it with `kcaptcha export`")
    if fmt != FORMAT_VERSION:
        raise ModelError(f"{path} is model format {fmt}; this version reads format {FORMAT_VERSION}")
    try:
        info = ModelInfo(
            name=meta["kcaptcha.name"], path=path, preset=meta["kcaptcha.preset"], arch=meta["kcaptcha.arch"],
            classes=meta["kcaptcha.classes"], length_min=int(meta["kcaptcha.length_min"]),
            length_max=int(meta["kcaptcha.length_max"]), width=int(meta["kcaptcha.width"]),
            height=int(meta["kcaptcha.height"]), bytes=path.stat().st_size,
            decoder=meta.get("kcaptcha.decoder", "positions"),  # the first exports did not write it
            accuracy=card_accuracy(path.with_suffix(".md")),
        )
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path} has incomplete kcaptcha metadata ({exc})") from exc
    if info.decoder not in DECODERS:
        raise ModelError(f"{path} needs decoder {info.decoder!r}; this version knows {', '.join(DECODERS)}")
    return session, info


def _resolve(model: str | os.PathLike[str]) -> Path:
    """A shipped name or a file path -> the model file; unknown names get "did you mean"."""
    as_path = Path(model)
    if isinstance(model, os.PathLike) or as_path.suffix == ".onnx" or as_path.is_file():
        return as_path
    path = MODELS_DIR / f"{model}.onnx"
    if path.is_file():
        return path
    names = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
    close = difflib.get_close_matches(str(model), names + ["auto"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(names) if names else "none installed"
    raise ModelError(f"unknown model {str(model)!r} (shipped: {known}; or 'auto', or a .onnx path){hint}")


class Solver:
    """Reads captchas with one model, or with ``"auto"``: the shipped model that fits each image.

    ``Solver()`` uses gnuboard5. ``"auto"`` picks by image size; between same-size
    models (160x60: gnuboard5 and seed-l2) it picks the one whose string length
    fits the width of the dark pixels (~18 px per character). ``Result.model`` says
    which was used. One solver is safe to share between threads: each model is
    one onnxruntime session, and sessions run concurrently.

    ``threads`` is onnxruntime's intra-op thread count per call. One is fastest for
    single images (the network is tiny, so thread hand-offs cost more than they
    save) and lets concurrent callers use the other cores; raise it for big batches.
    """

    def __init__(
        self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, threads: int = 1, max_pixels: int = MAX_PIXELS
    ) -> None:
        self.max_pixels = max_pixels
        self.auto = str(model) == "auto" and not isinstance(model, os.PathLike)
        paths = sorted(MODELS_DIR.glob("*.onnx")) if self.auto else [_resolve(model)]
        if not paths:
            raise ModelError(f"'auto' needs shipped models, but {MODELS_DIR} has none")
        # Sessions are created once and shared: onnxruntime's run() is safe to call from many threads.
        loaded = [_load(path, threads) for path in paths]
        self._sessions = {info.name: session for session, info in loaded}
        self.models: dict[str, ModelInfo] = {info.name: info for _, info in loaded}

    @property
    def name(self) -> str:
        """The model name, or "auto"."""
        return "auto" if self.auto else next(iter(self.models))

    @property
    def info(self) -> ModelInfo:
        """The model's metadata (not defined for "auto", which has one model per image size)."""
        if self.auto:
            raise ModelError("an 'auto' solver has no single model: see Solver.models")
        return next(iter(self.models.values()))

    @property
    def width(self) -> int:
        """Input width the model expects; other sizes are resized."""
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    def solve(self, image: ImageInput) -> Result:
        """Read one image: bytes, a path, a PIL image, or an array (HxWx3 RGB or HxW gray, uint8)."""
        return self.solve_many([image])[0]

    def solve_many(self, images: Sequence[ImageInput]) -> list[Result]:
        """Read many images in one onnxruntime call per model; ImageError names the first bad one."""
        start = time.perf_counter()
        decoded = []
        for i, image in enumerate(images):
            try:
                decoded.append(to_rgb_array(image, self.max_pixels))
            except ImageError as exc:
                if len(images) == 1:
                    raise
                raise ImageError(f"image {i}: {exc}") from exc
        groups: dict[str, list[int]] = {}
        for i, arr in enumerate(decoded):
            groups.setdefault(self._pick(arr).name, []).append(i)
        out: list[Result | None] = [None] * len(decoded)
        for name, idx in groups.items():
            info = self.models[name]
            batch = np.stack([_fit(decoded[i], info) for i in idx])
            probs = self._sessions[name].run(["probs"], {"image": batch})[0]
            for i, p in zip(idx, probs, strict=True):
                out[i] = _decode(p, info, resized=decoded[i].shape[:2] != (info.height, info.width))
        ms = (time.perf_counter() - start) * 1000 / max(len(decoded), 1)
        return [replace(r, ms=round(ms, 3)) for r in out]

    def _pick(self, arr: np.ndarray) -> ModelInfo:
        if not self.auto:
            return self.info
        h, w = arr.shape[:2]

        def misfit(m: ModelInfo) -> tuple[bool, float]:  # the exact size first, else the closest aspect
            return (m.width, m.height) != (w, h), round(abs(float(np.log(m.width * h / (m.height * w)))), 6)

        best = min(map(misfit, self.models.values()))
        same = [m for m in self.models.values() if misfit(m) == best]
        if len(same) == 1:
            return same[0]
        ink = _ink_width(arr) * same[0].width / w
        return min(same, key=lambda m: abs(ink - CHAR_WIDTH * (m.length_min + m.length_max) / 2))

    def __repr__(self) -> str:
        return f"Solver({self.name!r})"


def to_rgb_array(image: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any accepted input -> uint8 [H, W, 3]; ImageError for anything that is not a usable image."""
    if isinstance(image, np.ndarray):
        return _array_rgb(image, max_pixels)
    if isinstance(image, Image.Image):
        _check_size(image.size, max_pixels)
        try:
            return np.asarray(image.convert("RGB"))
        except (ValueError, OSError) as exc:  # an unsupported mode, or a lazy image whose file is bad
            raise ImageError(f"cannot convert this {image.mode} image to RGB: {exc}") from exc
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {image}: {exc.strerror or exc}") from exc
    else:
        raise ImageError(f"cannot read a {type(image).__name__}: pass bytes, a path, a PIL image or an array")
    if not data:
        raise ImageError("empty input")
    return decode_bytes(data, max_pixels)


def decode_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes, refusing huge declared dimensions before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            _check_size(im.size, max_pixels)  # the header alone: a decompression bomb is never expanded
            return np.asarray(im.convert("RGB"))
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image (accepted formats: {', '.join(FORMATS)})") from exc
    except Image.DecompressionBombError as exc:  # Pillow's own header check, for gigapixel declarations
        raise ImageError(f"image declares more than the {max_pixels:,} pixels accepted ({exc})") from exc
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, ...) on bad input
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from exc


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"image is {w}x{h}: more than the {max_pixels:,} pixels accepted")


def _array_rgb(arr: np.ndarray, max_pixels: int) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ImageError(f"array must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"array must be HxWx3 RGB or HxW gray, got shape {arr.shape}")
    _check_size((arr.shape[1], arr.shape[0]), max_pixels)
    return np.ascontiguousarray(arr)


def _fit(arr: np.ndarray, info: ModelInfo) -> np.ndarray:
    """The model's input size; other sizes are resized, which the Result reports.

    Nearest-neighbour, because the models read crisp pixels: on 100 real gnuboard5 images
    enlarged 1.25-2x (nearest, bilinear or Lanczos), it read 93-100 % back, Lanczos 91-100 %,
    bilinear only 43-92 %.
    """
    if arr.shape[:2] == (info.height, info.width):
        return arr
    return np.asarray(Image.fromarray(arr).resize((info.width, info.height), Image.NEAREST))


def _ink_width(arr: np.ndarray) -> int:
    """Width of the columns holding dark pixels: a cheap estimate of the string length."""
    gray = arr.mean(axis=2)
    dark = gray < (gray.min() + gray.max()) / 2
    cols = np.flatnonzero(dark.sum(axis=0) >= 2)  # >= 2: ignore a stray JPEG speck
    return int(cols[-1] - cols[0] + 1) if cols.size else 0


def _char_steps(best: np.ndarray, probs: np.ndarray, decoder: str, none: int) -> list[int]:
    """The step that reads each character: positions up to the first "none", or for CTC the most
    confident step of each run of one symbol (runs collapse, "none" is the blank)."""
    if decoder == "positions":
        stop = np.flatnonzero(best == none)
        return list(range(int(stop[0]) if stop.size else len(best)))
    steps, start = [], 0
    for end in [*np.flatnonzero(best[1:] != best[:-1]) + 1, len(best)]:
        if best[start] != none:
            steps.append(start + int(probs[start:end, best[start]].argmax()))
        start = end
    return steps


def _decode(probs: np.ndarray, info: ModelInfo, resized: bool) -> Result:
    """probs [steps, K+1] -> text, with per-character confidence and alternatives."""
    none = len(info.classes)
    best = probs.argmax(axis=1)
    steps = _char_steps(best, probs, info.decoder, none)
    text = "".join(info.classes[best[s]] for s in steps)
    conf = tuple(round(float(probs[s, best[s]]), 4) for s in steps)
    alts = []
    for s, c in zip(steps, conf, strict=True):
        if c >= LOW_CONFIDENCE:
            alts.append(())
            continue
        order = [k for k in np.argsort(-probs[s]) if k != best[s] and probs[s, k] >= ALTERNATIVE_MIN]
        alts.append(tuple((info.classes[k] if k < none else "", round(float(probs[s, k]), 4))
                          for k in order[:ALTERNATIVES_MAX]))
    return Result(text, conf, tuple(alts), info.name, 0.0, resized)
