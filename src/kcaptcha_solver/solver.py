"""Read KCAPTCHA images with an exported model: onnxruntime, numpy and Pillow only.

This module never imports torch or training code, so ``pip install kcaptcha-solver``
is enough to solve. Everything a model needs (symbols, lengths, input size, how to
read its answer) is read from the model file's metadata, so any exported ``.onnx`` works.

>>> Solver().solve("captcha.jpg").text     # "auto": the shipped model that fits the image
'480316'
>>> Solver().solve("kcaptcha.mp3").text    # Gnuboard's spoken captcha, read exactly
'001546'

How a request flows
-------------------
:meth:`Solver.solve_many` is the one front door; each stage lives in its own place::

    decode -> (locate) -> route -> read

* **decode**: :func:`kcaptcha_solver.inputs.to_rgb_array` turns bytes, a path, a binary file
  object, a PIL image or an array into ``uint8 [H, W, 3]``, or raises an
  :class:`~kcaptcha_solver.errors.InputError` (:class:`~kcaptcha_solver.errors.ImageError` for
  images). ``Solver._picture`` calls it.
* **locate**: ``Solver._picture`` asks :func:`kcaptcha_solver.locate.locate` for the captchas in the
  picture, searching for the shapes of the solver's models (their sizes come from the model files, so a
  model added later is searched for too). A *bare captcha*, a picture already at a model's size (for
  a named model: its own or any shipped model's; for a named general model, any picture no bigger than
  ``CAPTCHA_MAX``), skips the search: it is read whole, exactly as
  before, with ``Result.box`` None. Any other picture, up to a 4K screenshot, is searched: each
  captcha found is cut out at its box and resampled to its model's size (nearest), and
  :attr:`Result.box` says where it was, ``(x, y, w, h)`` in the input's pixels. :meth:`Solver.solve`
  and :meth:`Solver.solve_many` read the first captcha (top to bottom), :meth:`Solver.solve_all` each
  one. A picture with none is a :class:`~kcaptcha_solver.errors.NoCaptchaError`, never a guess, unless
  it is no bigger than KCAPTCHA draws (``CAPTCHA_MAX``): then it may be another configuration's captcha,
  and it is read whole and stretched, box None: by the general model when there is one (sure when its
  score says so: it was calibrated on such pictures), else by the closest shape and never sure. A picture
  read whole with no ink in it (``inputs.inked``: a blank one) is a NoCaptchaError too. A captcha
  found at another scale than its model's is ``resized`` and never sure (see ``Solver._run``).
* **route**: with ``"auto"`` (the default), :func:`route` picks the shipped model for the
  picture's size (a located captcha's is its model's), told apart by ink width when two share a
  size; any other picture goes to the general model (``kcaptcha-any``, preset ``any``: every
  configuration, any size), and it reads again what a preset model read of a bare picture (unless that reading is
  confident and of symbols the model trusts) or of a captcha found filling a captcha-sized picture (see
  ``Solver._read``); when it makes the preset model's answer unsure, :attr:`Result.warning` says what it read.
  A solver of one named model always uses it, and when the picture is not its size, or ``route`` would pick another
  model, says so in :attr:`Result.warning` (the CLI prints it, the service returns and logs it).
* **read**: the model runs once per model and batch on pictures resampled to its input size
  (:func:`kcaptcha_solver.inputs.fit`, nearest neighbour), and :func:`read` turns its
  probabilities into a :class:`Result`, with the thresholds the model file carries
  (:class:`kcaptcha_solver.modelfile.Reading`). A captcha found at another size than its own and read
  below the model's ``sure_min`` is read once more at other phases of the resampling grid
  (``locate.PHASES``); when those readings disagree, at every phase of ``locate.GRID``; and the string likeliest
  under all its readings stands (:func:`likeliest`).

Audio: Gnuboard's mp3 captcha is another kind of input, not another image. Encoded input that
starts like an mp3 (:func:`kcaptcha_solver.audio.looks_like_mp3`) goes to
:func:`kcaptcha_solver.audio.read` instead of decode, whatever the solver's model (a model reads
images; the mp3 is read exactly by its voice set), and answers with a ``Result`` of
``kind="audio"``, the voice set as ``model``, confidence 1.0 and no box; a file that is not
exactly one known voice set's clips is an :class:`~kcaptcha_solver.errors.AudioError`, another
``InputError``. audio.py is imported with this module, not lazily: ``python -X importtime`` puts
it at 5-11 ms of the 200-430 ms that ``import kcaptcha_solver`` takes.

The page (``web/app.js``) runs the same stages; ``web/reading.js`` is its copy of :func:`route`,
:func:`read` and ``inputs.fit``, and tests/fixtures/reading.json checks both against one set of cases.

Errors: a corrupt, empty, oversized or non-image input, or a picture with no captcha in it
(:class:`~kcaptcha_solver.errors.NoCaptchaError`), is an :class:`~kcaptcha_solver.errors.ImageError`
(``solve`` and ``solve_all`` raise it, ``solve_many`` puts it in the input's place); a missing,
unknown or foreign model raises :class:`~kcaptcha_solver.errors.ModelError`; a lone input given as a batch raises
:class:`~kcaptcha_solver.errors.UsageError`.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort
from PIL import Image

from . import audio
from .errors import InputError, ModelError, NoCaptchaError, UsageError, did_you_mean
from .inputs import MAX_PIXELS, Box, ImageInput, fit, inked, read_bytes, to_rgb_array
from .locate import GRID, PHASES, locate
from .modelfile import AUTO, FORMAT_VERSION, GENERAL, Reading, bare, catalogue_key
from .modelfile import DEFAULT_MODEL as DEFAULT_MODEL  # re-exported: the first model in the catalogue

MODELS_DIR = Path(__file__).resolve().parent / "models"
DECODERS = ("positions", "ctc")
CARD_ACCURACY = re.compile(r"^[\W_]*accuracy[\W_]*?:?[*_\s|]*([0-9]+(?:\.[0-9]+)?)\s*%", re.I | re.M)
# The largest picture KCAPTCHA draws (generator.random_config: 100-200 x 40-100 px, +12 for the credits strip).
# A picture no bigger in which no captcha is found may be a captcha of another configuration: it is read whole.
CAPTCHA_MAX = (200, 112)
CAPTCHA_MIN_WIDTH = 100  # nor narrower (generator.random_config): a narrower picture is a shrunk view of one
FILL_HEIGHT = 0.8  # a found captcha this share of a captcha-sized picture's height, and as wide, fills it
# prefer_general: the general model's answer replaces a preset model's when it reaches this score (above half, no
# other string is likelier) and gives the preset model's string less than IMPLAUSIBLE. Chosen on resized real
# images (25 a preset, 0.41-3x) and 900 generated captchas of other configurations: no resized one lost, and
# 58 % of the others that locate found filling the picture gained (13.5 % read right before).
GENERAL_MIN, IMPLAUSIBLE = 0.5, 1e-4
# general_doubts: a specialist's sure answer is no longer sure when the general model reads another string and gives
# the specialist's less than DOUBTFUL. Chosen on generated images (1,000 per set, seeds from 5,500,000): each preset,
# and each preset's settings with another symbol set (a site that edited allowed_symbols). Of those foreign captchas,
# auto had read 396-564 per set wrong and sure at seed-l2's settings, 184-228 at kcaptcha-default's, 16-36 at
# gnuboard5's; with the check at DOUBTFUL, 2-21, 28-33 and 1-2, while kcaptcha-default's own sure share went
# 97.1 -> 96.3 % (96.8 at 3e-3, 95.8 at 3e-2: the general model reads that style at 88 %, so it doubts right answers).
DOUBTFUL = 1e-2
# ... or less than DOUBTFUL_FOREIGN when the general model's string holds a symbol the specialist does not know (it
# cannot have read that one right). Chosen on the same sets: wrong and sure at kcaptcha-default's settings 28-33 ->
# 15-22 per 1,000, at seed-l2's 2-21 -> 1-16, for 96.3 -> 96.0 % of kcaptcha-default's own captchas sure (0.2:
# 6-13 and 95.0 %; doubting every such reading: 5-12 and 93.3 %, under the 95 % that issue 13 asks to keep sure).
DOUBTFUL_FOREIGN = 5e-2
# ... or less than DOUBTFUL_DROPPED when its string is the specialist's with such symbols put in: the specialist, never
# having seen them, passed over them, sure (kcaptcha-default read 5227413 of a digits site as 522743 at 0.9997, the
# general model 5227413, giving 522743 0.12). Chosen on 600 generated per set at kcaptcha-default's settings (seeds
# from 61,000,000) and checked on 600 more (62,000,000): wrong and sure with digits 13 -> 5, hex 21 -> 9, KCAPTCHA
# 1.2.x's set 14 -> 7, all 36 23 -> 16, for 578 -> 573 of its own 600 sure; at seed-l2's and gnuboard5's settings
# nothing changed. (0.35: the same, 4 more of its own unsure at 61,000,000.)
DOUBTFUL_DROPPED = 0.3


class Picture(NamedTuple):
    """A captcha to read: its pixels, where it is in the input, and the input it was found in."""

    pixels: np.ndarray
    box: Box | None  # in the input's pixels; None: the whole input, read as it is (a bare captcha)
    # the captcha at other phases of its resampling (Found.views), given the shifts; none for a bare one
    views: Callable[[Sequence[tuple[float, float]]], tuple[np.ndarray, ...]] = lambda shifts: ()
    # The captcha-sized input (CAPTCHA_MAX) that a found captcha fills (as wide, 2 px spare, and FILL_HEIGHT of its
    # height: a credits band below may be cut off): it may be another configuration's captcha, of which the
    # general model reads this whole input, as it was trained to, rather than the resampled crop. (A loose
    # screenshot crop around a small captcha is captcha-sized too, but its margins are no captcha's; and one
    # narrower than CAPTCHA_MIN_WIDTH is a screen's shrunk view: kcaptcha-default's 160x92 cut from a DPR-1
    # screenshot is 66x38, of which the general model read a generated 3x9gc4 as 3g, in place of the right reading.)
    entire: np.ndarray | None = None


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
    reading: Reading = field(default_factory=Reading)  # thresholds for reading its answers

    @classmethod
    def from_meta(cls, meta: Mapping[str, object], path: Path, size: int = 0, accuracy: float | None = None
                  ) -> ModelInfo:
        """From a model file's metadata (``kcaptcha.*`` or bare keys); KeyError/ValueError when incomplete."""
        meta = bare(meta)
        return cls(
            name=str(meta["name"]), path=path, preset=str(meta["preset"]), arch=str(meta["arch"]),
            classes=str(meta["classes"]), length_min=int(meta["length_min"]), length_max=int(meta["length_max"]),
            width=int(meta["width"]), height=int(meta["height"]),
            decoder=str(meta.get("decoder", "positions")),  # the first exports did not write it
            bytes=size, accuracy=accuracy, reading=Reading.from_meta(meta),
        )

    @property
    def general(self) -> bool:
        """Trained on the whole KCAPTCHA space (preset ``any``): reads any picture stretched to its input."""
        return self.preset == GENERAL

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class Result:
    """One solved captcha.

    ``confidence[i]`` is the model's probability for ``text[i]``; ``alternatives[i]``
    lists up to three other (symbol, probability) pairs for a character below
    ``LOW_CONFIDENCE`` (empty when the character is sure; symbol "" means the string
    may end there). ``ms`` is this image's share of the call, decoding included.
    ``resized`` says the pixels read were not at the model's size (a bare picture resized to fit,
    or a captcha found at another scale and resampled). ``box`` is where in the input the captcha
    was found, ``(x, y, width, height)`` in input pixels, or None when the whole input was read
    (a bare captcha: a picture already at a model's size, read as is, without a search). ``kind`` is
    what was read: ``"image"``, or ``"audio"`` (Gnuboard's mp3:
    ``model`` is the voice set, every confidence 1.0, the match being exact). ``warning`` says why
    the answer may be wrong although something was read: a named model was made to read an image
    that is not its size, or that ``"auto"`` would give to another model; or in ``"auto"``, the general model
    read another string and made the preset model's answer unsure (:func:`general_doubts`); None otherwise.
    ``score`` is the model's probability of the whole string (see :func:`string_score`), rounded to
    4 places, and ``sure`` says it reaches the model's calibrated ``Reading.sure_min`` on an image the
    calibration covers (its model's size, no ``warning``; a captcha found at another scale is not covered,
    see ``_read``): an unsure answer is worth a second look, or a fresh captcha. Audio answers are exact:
    score 1.0, sure.
    """

    text: str
    confidence: tuple[float, ...]
    alternatives: tuple[tuple[tuple[str, float], ...], ...]
    model: str
    ms: float
    resized: bool
    box: Box | None = None
    kind: str = "image"
    warning: str | None = None
    score: float = 0.0  # a Result built without one is unsure
    sure: bool = False

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "confidence": list(self.confidence),
            "alternatives": [[list(a) for a in alts] for alts in self.alternatives],
            "score": self.score,
            "sure": self.sure,
            "model": self.model,
            "ms": self.ms,
            "resized": self.resized,
            "box": list(self.box) if self.box else None,
            "kind": self.kind,
            "warning": self.warning,
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


@lru_cache(maxsize=1)
def catalogue() -> tuple[ModelInfo, ...]:
    """The shipped models in catalogue order, read once (cached): what a named model is checked against."""
    return tuple(sorted(shipped_models().values(), key=_order))


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
        info = ModelInfo.from_meta(meta, path, path.stat().st_size, card_accuracy(path.with_suffix(".md")))
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
    hint = did_you_mean(str(model), names + ["auto"])
    known = ", ".join(names) if names else "none installed"
    raise ModelError(f"unknown model {str(model)!r} (shipped: {known}; or 'auto', or a .onnx path){hint}")


class Solver:
    """Reads captchas with ``"auto"`` (the default: the shipped model that fits each image) or one model.

    ``"auto"`` picks by image size (see :func:`route`); ``Result.model`` says which was used. A
    named model (or a ``.onnx`` path) reads every image, and its ``Result.warning`` says when the
    image does not fit it. Gnuboard's mp3 captchas are read by their voice set whatever the model.
    One solver is safe to share between threads: each model is one onnxruntime session, and
    sessions run concurrently.

    ``threads`` is onnxruntime's intra-op thread count per call. One is fastest for
    single images (the network is tiny, so thread hand-offs cost more than they
    save) and lets concurrent callers use the other cores; raise it for big batches.
    """

    def __init__(
        self, model: str | os.PathLike[str] = AUTO, *, threads: int = 1, max_pixels: int = MAX_PIXELS
    ) -> None:
        self.max_pixels = max_pixels
        self.auto = str(model) == AUTO and not isinstance(model, os.PathLike)
        paths = sorted(MODELS_DIR.glob("*.onnx")) if self.auto else [_resolve(model)]
        if not paths:
            raise ModelError(f"'auto' needs shipped models, but {MODELS_DIR} has none")
        # Sessions are created once and shared: onnxruntime's run() is safe to call from many threads.
        loaded = sorted((_load(path, threads) for path in paths), key=lambda pair: _order(pair[1]))
        self._sessions = {info.name: session for session, info in loaded}
        self.models: dict[str, ModelInfo] = {info.name: info for _, info in loaded}
        # The shapes searched for in a picture: this solver's models' sizes, from their files (a general model's
        # input is no captcha's shape: a named one searches for the shipped specialists'). A picture at one of
        # them, or (for a named model) at any shipped model's size, is a bare captcha: read whole, as before
        # locate existed, so a forced model still reads and warns on another model's image.
        shapes = [m for m in self.models.values() if not m.general] or [m for m in catalogue() if not m.general]
        self._sizes = list(dict.fromkeys((m.width, m.height) for m in shapes))
        self._general = next((m for m in self.models.values() if m.general), None) if self.auto else None
        self._bare = set(self._sizes) | (set() if self.auto else {(m.width, m.height) for m in catalogue()})
        self._whole = tuple(max(CAPTCHA_MAX[k], *(size[k] for size in self._sizes)) for k in (0, 1))

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
        """Read one captcha: bytes, a path or a binary file object (an image or Gnuboard's mp3), a PIL
        image, or an array (HxWx3 RGB or HxW gray, uint8). The picture may be the captcha alone or any
        picture holding it, up to a 4K screenshot: the first captcha found (top to bottom) is read and
        :attr:`Result.box` says where. Raises an InputError when it cannot (a NoCaptchaError when the
        picture holds none)."""
        result = self.solve_many([image])[0]
        if isinstance(result, InputError):
            try:
                raise result
            finally:
                del result  # else this frame would hold the error that holds this frame (a cycle)
        return result

    def solve_all(self, image: ImageInput) -> list[Result]:
        """Read every captcha in one picture (a page showing several forms), top to bottom, each with its
        :attr:`Result.box`; ``ms`` is each one's share of the call. A bare captcha or an mp3 gives one
        Result. Raises an InputError as :meth:`solve` does: a NoCaptchaError when there is none, so an
        empty list never passes for a reading."""
        start = time.perf_counter()
        got = self._decode(image)
        results = [got] if isinstance(got, Result) else self._read(got)
        ms = round((time.perf_counter() - start) * 1000 / len(results), 3)
        return [replace(r, ms=ms) for r in results]

    def solve_many(self, images: Iterable[ImageInput]) -> list[Result | InputError]:
        """Read many captchas, the images in one onnxruntime call per model (of each picture, the first
        captcha found, as :meth:`solve` reads it).

        Returns one item per input, in order: its :class:`Result`, or, for an input that cannot be
        read, the :class:`~kcaptcha_solver.errors.InputError` saying why, in its place (as
        ``asyncio.gather(..., return_exceptions=True)`` does)::

            for path, r in zip(paths, solver.solve_many(paths)):
                print(path, r if isinstance(r, InputError) else r.text)

        Why this shape: one bad file no longer costs the batch; a failure cannot pass for an answer,
        as a Result with an empty text could (``r.text`` on it fails loudly); and the error keeps its
        type and details (``raise r``, ``AudioError.offset``). ``solve`` raises it instead.
        A lone input (a str, bytes, a path, a file object, one image) is refused with
        :class:`~kcaptcha_solver.errors.UsageError`: iterating it would read characters or rows.
        """
        _refuse_single(images)
        start = time.perf_counter()
        out: list[Result | InputError | None] = []
        pictures: dict[int, Picture] = {}
        for i, image in enumerate(images):
            try:
                got = self._decode(image)
            except InputError as exc:
                # Kept without its traceback: that holds this frame, whose `out` would hold the error, a
                # cycle that kept each bad input's pixel arrays alive until the garbage collector ran.
                got = exc.with_traceback(None)
            if isinstance(got, list):
                pictures[i] = got[0]  # the first captcha, top to bottom
                got = None
            out.append(got)
        for i, result in zip(pictures, self._read(list(pictures.values())), strict=True):
            out[i] = result
        ms = round((time.perf_counter() - start) * 1000 / max(len(out), 1), 3)
        return [r if isinstance(r, InputError) else replace(r, ms=ms) for r in out]

    def _read(self, pictures: list[Picture]) -> list[Result]:
        """route and read: one Result per picture, in order, the pictures in one run per model.

        With a general model among "auto"'s, it reads again what a specialist read of a captcha that may be
        another configuration's, and :func:`prefer_general` decides whose answer stands:

        * a bare picture of a specialist's size, unless its reading is :func:`confident` and made only of symbols
          the specialist's file trusts (``Reading.trusted``: gnuboard5's digits, to keep its 1 ms): another
          configuration can share a preset's size and style (a site that edited allowed_symbols), and a
          specialist cannot know a symbol it never saw: it reads it as one of its own, often sure;
        * a captcha found filling a captcha-sized picture (``Picture.entire``): another configuration's captcha,
          with no border, fits a specialist's shape at some scale as well as a tight screenshot crop does.

        Its answer stands when the specialist's has a length the specialist never reads (surely wrong), or
        else when :func:`prefer_general` says so (for a confident reading of a bare picture, only when the general
        model's holds a symbol the specialist does not know); else the specialist's answer stands, unsure if
        :func:`general_doubts` it. The general model reads the pixels the specialist read, or for
        a found captcha the whole picture it fills: what it was trained on, where the crop resampled to the
        specialist's size and then stretched again lost what it needed (on 1,000 generated captchas of the whole
        space, 132 were read from finds by a specialist, 74 right; the general model read 112 of their pictures
        right, whole)."""
        out: list[Result] = [None] * len(pictures)  # type: ignore[list-item]  # every index is in one group
        firsts: list[np.ndarray] = [None] * len(pictures)  # type: ignore[list-item]  # each reading's probabilities
        groups: dict[str, list[int]] = {}
        for i, picture in enumerate(pictures):
            groups.setdefault(self._route(picture.pixels).name, []).append(i)
        for name, idx in groups.items():
            results, probs = self._run(self.models[name], [pictures[i] for i in idx])
            for i, result, p in zip(idx, results, probs, strict=True):
                out[i], firsts[i] = result, p
        general = self._general
        again = [i for i, r in enumerate(out) if general and r.model != general.name
                 and (pictures[i].entire is not None or pictures[i].box is None and self._checked(r))]
        if general and again:
            # the whole input: a bare picture is one already (no box, no views), a found captcha's is its entire
            whole = [pictures[i] if pictures[i].entire is None else Picture(pictures[i].entire, None) for i in again]
            seconds, probs = self._run(general, whole)
            for i, second, p in zip(again, seconds, probs, strict=True):
                first, info = out[i], self.models[out[i].model]
                # A confident reading of a bare picture gives way only to a reading with a symbol the specialist does
                # not know (another configuration's); between two readings of its own symbols the specialist, trained
                # on its configuration alone, reads better (kcaptcha-default's: 99.7 % of 1,000 generated, the
                # general model 87.7 %), so the general model can only make it unsure.
                disputed = pictures[i].entire is None and confident(first.score, first.text, info)
                # a specialist's best path of a length it never reads is wrong whatever the general model says
                # (mend() may have made it fit: a guess, which the general model's reading of the whole beats)
                if not fits(unmended(firsts[i], info), info) or (prefer_general(first.text, second, p, general)
                                                  and not (disputed and set(second.text) <= set(info.classes))):
                    out[i] = second
                elif first.sure and general_doubts(first.text, second, p, general, info):
                    out[i] = replace(first, sure=False, warning=f"the general model {general.name!r} reads it as "
                                     f"{second.text!r}: the answer is unsure")
        return out

    def _checked(self, result: Result) -> bool:
        """Whether the general model reads a specialist's bare picture again: unless the reading is confident and
        made only of symbols the specialist's file trusts."""
        info = self.models[result.model]
        return not confident(result.score, result.text, info) or not set(result.text) <= set(info.reading.trusted)

    def _run(self, info: ModelInfo, pictures: list[Picture]) -> tuple[list[Result], np.ndarray]:
        """One model's reading of pictures, in one onnxruntime call: the Results, and the probabilities. A picture
        with views (a captcha found at another size) whose reading scores below the model's ``sure_min`` is read
        at locate.PHASES too, in one more call for all such, and where those readings disagree at locate.GRID,
        in one more; then the string likeliest under all its readings stands (:func:`likeliest`)."""
        probs = self._probs(info, [picture.pixels for picture in pictures])
        answers = [read(p, info) for p in probs]
        readings = {i: [(answer, probs[i])] for i, answer in enumerate(answers)
                    if answer.score < info.reading.sure_min}
        self._read_at(info, pictures, readings, PHASES)
        self._read_at(info, pictures, {i: r for i, r in readings.items() if len({a.text for a, _ in r}) > 1}, GRID)
        for i, found in readings.items():
            answers[i], probs[i] = likeliest(found, info)
        results = []
        for (pixels, box, *_), answer in zip(pictures, answers, strict=True):
            shown = tuple(box[2:]) if box else pixels.shape[1::-1]  # the captcha's size in the input
            resized = shown != (info.width, info.height)
            warning = self._misfit(info, pixels, box)
            # The calibration saw only images of the model's own configuration and size (a general model's: whole
            # captchas of any size, stretched): outside it a model can be wrong with a high score (seed-l2 reads
            # gnuboard5's 6 digits as 2, at 0.99). That holds for captchas located at another scale too: on
            # screenshots, 4 of 3,613 shrunk ones that reached sure_min were wrong (99.89 %; 78 of 11,096 before
            # the models learned screen views; benchmarks/screenshot_sure.py), short of the 99.9 % promised.
            # So a resized captcha is unsure.
            covered = box is None if info.general else not resized
            results.append(replace(answer, resized=resized, box=box, warning=warning,
                                   sure=answer.sure and covered and warning is None))
        return results, probs

    def _read_at(self, info: ModelInfo, pictures: list[Picture], readings: dict[int, list[tuple[Result, np.ndarray]]],
                 shifts: Sequence[tuple[float, float]]) -> None:
        """Add to each picture's ``readings`` (by index) those of its views at ``shifts``, in one onnxruntime
        call for all; pictures without views (at the model's own size) gain none."""
        again = [(i, view) for i in readings for view in pictures[i].views(shifts)]
        if again:
            for (i, _), p in zip(again, self._probs(info, [view for _, view in again]), strict=True):
                readings[i].append((read(p, info), p))

    def _probs(self, info: ModelInfo, pixels: list[np.ndarray]) -> np.ndarray:
        """The model's output for pictures brought to its size, in one onnxruntime call."""
        batch = np.stack([fit(p, info.width, info.height) for p in pixels])
        return self._sessions[info.name].run(["probs"], {"image": batch})[0]

    def _decode(self, image: ImageInput) -> Result | list[Picture]:
        """A spoken captcha read to its end, or the captchas of an image: pixels to read and their box."""
        if isinstance(image, (np.ndarray, Image.Image)):
            return self._picture(image)
        data = read_bytes(image)
        if audio.looks_like_mp3(data):
            text, voice = audio.read(data)
            return Result(text, (1.0,) * len(text), ((),) * len(text), voice, 0.0, False, kind="audio",
                          score=1.0, sure=True)
        return self._picture(data)

    def _picture(self, image: ImageInput) -> list[Picture]:
        """decode, then locate: each captcha's pixels and box in the input, top to bottom.

        A bare captcha (at a size in ``_bare``) is the whole picture, box None, with no search: the fast
        path costs one set lookup. So is any captcha-sized picture (``_whole``) for a named general model:
        its user says the captcha is of another configuration, which it reads whole. Else
        :func:`~kcaptcha_solver.locate.locate` finds each captcha of a model's shape and resamples it to
        that model's size. When it finds none, a captcha-sized picture is read whole, stretched: a captcha
        of another configuration, which "auto" gives to the general model (sure when it is sure: it was
        calibrated on such pictures) or, without one, to the closest shape (resized, so never sure). A
        bigger one is a NoCaptchaError, and so is a picture read whole with no ink in it (``inputs.inked``)."""
        rgb = to_rgb_array(image, self.max_pixels)
        h, w = rgb.shape[:2]
        captcha_sized = w <= self._whole[0] and h <= self._whole[1]
        if (w, h) in self._bare or (captcha_sized and not self.auto and self.info.general):
            return [_whole_picture(rgb)]
        found = locate(rgb, self._sizes)
        if found:
            another = captcha_sized and w >= CAPTCHA_MIN_WIDTH  # may be another configuration's captcha, whole
            fills = [another and f.box[2] >= w - 2 and f.box[3] >= FILL_HEIGHT * h for f in found]
            return [Picture(f.pixels, f.box, f.views, rgb if full else None)
                    for f, full in zip(found, fills, strict=True)]
        if captcha_sized:
            return [_whole_picture(rgb)]
        raise NoCaptchaError(f"no captcha found in this {w}x{h} picture")

    def _misfit(self, info: ModelInfo, pixels: np.ndarray, box: Box | None) -> str | None:
        """For a named model: why this picture may not be its to read (``Result.warning``), or None.

        A located captcha is resampled to the model's size, so for it the question is only whether
        ``route`` would choose another model (same size, another ink width). A general model was trained on
        every configuration, the presets' included, at any size: nothing is outside it."""
        if self.auto or info.general:
            return None
        h, w = pixels.shape[:2]
        rivals = [info, *(m for m in catalogue() if m.name != info.name)]  # first: it wins a tie
        fitting = route(rivals, pixels)
        if fitting is not info:
            what = f"this {w}x{h} image" if box is None else f"the {box[2]}x{box[3]} captcha at ({box[0]}, {box[1]})"
            return (f"{what} looks like one for model {fitting.name!r}, not {info.name!r}: "
                    f"the answer is likely wrong (use model 'auto' or {fitting.name!r})")
        if (w, h) != (info.width, info.height):
            return (f"this image is {w}x{h}, not the {info.width}x{info.height} model {info.name!r} reads: "
                    "it was resized to fit")
        return None

    def _route(self, pixels: np.ndarray) -> ModelInfo:
        return route(self.models.values(), pixels) if self.auto else self.info

    def __repr__(self) -> str:
        return f"Solver({self.name!r})"


def _whole_picture(rgb: np.ndarray) -> Picture:
    """A picture read whole, if it holds a captcha's ink: a blank one is no captcha, not an empty or invented
    answer."""
    if not inked(rgb):
        h, w = rgb.shape[:2]
        raise NoCaptchaError(f"no captcha found in this {w}x{h} picture: it has no ink")
    return Picture(rgb, None)


def _order(info: ModelInfo) -> tuple:
    return catalogue_key(info.name, info.width, info.height)


def _refuse_single(images: object) -> None:
    """UsageError when what should be a batch of inputs is one input."""
    single = isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)) \
        or callable(getattr(images, "read", None)) or (isinstance(images, np.ndarray) and images.ndim < 4)
    if single:
        raise UsageError(f"solve_many takes a list of inputs, not one {type(images).__name__}: "
                         "use solve(x), or solve_many([x])")


def prefer_general(first: str, second: Result, probs: np.ndarray, general: ModelInfo) -> bool:
    """Whether the general model's ``second`` reading replaces a preset model's answer ``first``: it reads
    another string, likely enough (GENERAL_MIN), and finds ``first`` implausible (below IMPLAUSIBLE). Scores
    of two models cannot be compared: a preset model scores another configuration's captcha as high as the
    general model does, but the general model knows every symbol, so it can judge the preset model's string."""
    if second.text == first or second.score < GENERAL_MIN:
        return False
    return plausibility(first, probs, general) < IMPLAUSIBLE


def general_doubts(first: str, second: Result, probs: np.ndarray, general: ModelInfo, info: ModelInfo) -> bool:
    """Whether the general model's ``second`` reading makes the sure answer ``first`` of the preset model ``info``
    unsure: it reads another string and gives ``first`` less than DOUBTFUL; less than DOUBTFUL_FOREIGN when its
    string holds a symbol ``info`` does not know, or DOUBTFUL_DROPPED when that string less those symbols is
    ``first``. A preset model cannot know a symbol it never saw: on another configuration of its size and style (a
    site that edited allowed_symbols) it reads the foreign symbols as its own or passes over them, sure, while the
    general model knows all 36."""
    if second.text == first:
        return False
    known = "".join(c for c in second.text if c in info.classes)
    limit = DOUBTFUL if known == second.text else DOUBTFUL_DROPPED if known == first else DOUBTFUL_FOREIGN
    return plausibility(first, probs, general) < limit


def plausibility(text: str, probs: np.ndarray, general: ModelInfo) -> float:
    """The general model's probability of ``text`` (0 for a symbol it does not know)."""
    if any(c not in general.classes for c in text):
        return 0.0
    return string_score(probs, [general.classes.index(c) for c in text], general.decoder, len(general.classes))


def route(models: Iterable[ModelInfo], pixels: np.ndarray) -> ModelInfo:
    """The model for a picture: one trained on its size; else the general model (preset ``any``) when
    there is one, else the closest aspect ratio (it is resized).

    Between models of the same size (160x60: gnuboard5 and seed-l2) the one whose string length
    fits the width of the dark pixels (``Reading.char_width`` px per character). Ties go to the
    first in ``models``; Solver keeps them in catalogue order, as the page does (web/reading.js).
    """
    models = list(models)
    h, w = pixels.shape[:2]
    general = next((m for m in models if m.general), None)
    if general is not None:
        models = [m for m in models if not m.general and (m.width, m.height) == (w, h)] or [general]

    def misfit(m: ModelInfo) -> tuple[bool, float]:  # the exact size first, else the closest aspect
        return (m.width, m.height) != (w, h), round(abs(float(np.log(m.width * h / (m.height * w)))), 6)

    best = min(map(misfit, models))
    same = [m for m in models if misfit(m) == best]
    if len(same) == 1:
        return same[0]
    ink = _ink_width(pixels) * same[0].width / w
    return min(same, key=lambda m: abs(ink - m.reading.char_width * (m.length_min + m.length_max) / 2))


def _ink_width(arr: np.ndarray) -> int:
    """Width of the columns holding dark pixels: a cheap estimate of the string length.

    Gray is kept as the channels' integer sum (3x the mean: the same comparisons, no floats), added channel
    by channel: numpy's mean over the last axis took 0.18 ms of a gnuboard5 image's 1.07, this 0.03."""
    gray = arr[..., 0] + arr[..., 1].astype(np.uint16) + arr[..., 2]
    dark = 2 * gray < int(gray.min()) + int(gray.max())  # below mid-range
    cols = np.flatnonzero(np.count_nonzero(dark, axis=0) >= 2)  # >= 2: ignore a stray JPEG speck
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


def string_score(probs: np.ndarray, labels: list[int], decoder: str, none: int) -> float:
    """The model's probability of the string ``labels`` (class indices), in float64: :func:`string_scores` of one.

    positions: the product over every step of the step's probability for its class: the string's
    characters, then "none" on each step after it (a string that reads "none" too early or too late
    scores low). ctc: the sum over every alignment that collapses to the string (the CTC forward
    algorithm), not the best alignment's product: a doubled character needs a blank step between its
    two runs, so when the model drops one of ``ii`` the string with both keeps the probability the
    best path ignored, and the read one scores low. web/reading.js computes the same probability step
    by step (the same to the 4 places reported).
    """
    return float(string_scores(probs[None], labels, decoder, none)[0])


def string_scores(probs: np.ndarray, labels: list[int], decoder: str, none: int) -> np.ndarray:
    """:func:`string_score` of one string under each of several readings, probs [views, steps, K+1], in one
    batch: the likeliest of the strings that a captcha's phases read is chosen by all of them."""
    if decoder == "positions":  # float32 -> Python floats (exact), multiplied left to right
        picked = probs[:, np.arange(probs.shape[1]), labels + [none] * (probs.shape[1] - len(labels))]
        return np.array([math.prod(row) for row in picked.tolist()])
    ext = np.full(2 * len(labels) + 1, none)  # states: blank, l1, blank, l2, ..., blank
    ext[1::2] = labels
    # move[i, j] = 1 where state j may follow state i: stay, move on one, or skip the blank between two
    # different characters. alpha after the last step = alpha before the first @ the product over the
    # steps of move * that step's probabilities; multiplied as a balanced tree in ~log2(steps) batched
    # products rather than one small product per step: 0.1 ms instead of 0.25-0.38 ms at 40 steps.
    states = np.arange(len(ext))
    move = np.eye(len(ext)) + np.eye(len(ext), k=1)
    skips = states[3::2]
    move[skips - 2, skips] = ext[skips] != ext[skips - 2]
    chain = move * probs[:, :, ext].astype(np.float64)[:, :, None, :]  # [views, steps, states, states]
    while chain.shape[1] > 1:
        if chain.shape[1] % 2:
            chain = np.concatenate([chain, np.broadcast_to(np.eye(len(ext)), (len(chain), 1, len(ext), len(ext)))], 1)
        chain = chain[:, 0::2] @ chain[:, 1::2]
    # No rescaling: probability only drains away along a path, so a value that underflows belongs to a
    # string far below any threshold. Ends in the last character's state or the blank after it; the
    # chain starts in the leading blank's state (row 0), which may move on at the first step.
    return chain[:, 0, 0, -1] + (chain[:, 0, 0, -2] if len(ext) > 1 else 0.0)


def likeliest(readings: list[tuple[Result, np.ndarray]], info: ModelInfo) -> tuple[Result, np.ndarray]:
    """Of one captcha's readings at several phases (Result, probs), the string likeliest under all of them (the sum
    of their log :func:`string_scores`; the first read of equals), and of its readings the surest (the first of
    equals). Each phase alone misreads a few captchas, mostly not the same ones (locate.GRID)."""
    texts = list(dict.fromkeys(answer.text for answer, _ in readings))
    text = texts[0]
    if len(texts) > 1:
        probs = np.stack([p for _, p in readings])
        none = len(info.classes)
        logs = [np.log(np.maximum(string_scores(probs, [info.classes.index(c) for c in t], info.decoder, none),
                                  1e-300)).sum() for t in texts]
        text = texts[int(np.argmax(logs))]
    return max((r for r in readings if r[0].text == text), key=lambda r: r[0].score)


def read(probs: np.ndarray, info: ModelInfo) -> Result:
    """probs [steps, K+1] (float32, the model's output) -> text, per-character confidence, alternatives,
    the string's score and whether it is sure.

    A character is unsure when its confidence, rounded to 4 places as reported, is below
    ``info.reading.low_confidence``; then the other classes at least ``alternative_min`` likely
    (at most ``alternatives_max``, most likely first, ties by class order) are its alternatives.
    The answer is sure when its :func:`string_score`, rounded to 4 places as reported, is at least
    ``info.reading.sure_min`` and its length is one the model reads (``length_min``..``length_max``): a CTC
    model can drop a character with full confidence (``c5`` read ``5`` at 0.9982 by the general model,
    ``a2`` read ``2`` by kcaptcha-default, which reads 5-7), and no site draws a string of another length.
    For the same reason a CTC reading one character off those lengths is :func:`mend`-ed first.
    """
    rules = info.reading
    none = len(info.classes)
    best = probs.argmax(axis=1)
    if info.decoder == "ctc":
        best = mend(best, probs, info)
    steps = _char_steps(best, probs, info.decoder, none)
    text = "".join(info.classes[best[s]] for s in steps)
    conf = tuple(round(float(probs[s, best[s]]), 4) for s in steps)
    alts = []
    for s, c in zip(steps, conf, strict=True):
        if c >= rules.low_confidence:
            alts.append(())
            continue
        order = [k for k in np.argsort(-probs[s], kind="stable")
                 if k != best[s] and probs[s, k] >= rules.alternative_min]
        alts.append(tuple((info.classes[k] if k < none else "", round(float(probs[s, k]), 4))
                          for k in order[: rules.alternatives_max]))
    score = round(string_score(probs, [int(best[s]) for s in steps], info.decoder, none), 4)
    return Result(text, conf, tuple(alts), info.name, 0.0, False, score=score, sure=confident(score, text, info))


def mend(best: np.ndarray, probs: np.ndarray, info: ModelInfo) -> np.ndarray:
    """A CTC best path whose string is one character shorter or longer than the model reads -> the path of the
    likeliest string (:func:`string_score`) of a length it reads among those that one change to the path gives:
    a step set to the blank or to its likeliest symbol, or one character's run set to the blank. Any other path is
    returned as it is, as is this one when no change reaches such a length.

    Most misreads of small screenshots are a dropped character (kcaptcha-default shown 66x38 px, 0.41x: a narrow
    ``i``, one of a doubled pair), and its step still holds that character's probability (``7aea9`` read ``7aa9``,
    ``ddxz4`` read ``ddx4``; mended, both read right). The reading stays unsure: it reaches ``sure_min`` rarely,
    and in "auto" the general model's reading of a bare picture still replaces it (:meth:`Solver._read`)."""
    none = len(info.classes)
    length = len(_labels(best, none))
    if not info.length_min - 1 <= length <= info.length_max + 1 or info.length_min <= length <= info.length_max:
        return best
    at = np.arange(len(best))
    paths = [np.where(at == t, k, best) for t in at for k in (none, probs[t, :none].argmax()) if k != best[t]]
    starts = np.flatnonzero(np.diff(best, prepend=-1))  # each run of one class
    paths += [np.where((at >= a) & (at < b), none, best)
              for a, b in zip(starts, [*starts[1:], len(best)], strict=True) if best[a] != none]
    scores: dict[tuple[int, ...], float] = {}
    chosen, top = best, -1.0
    for path in paths:  # the first of equal scores, in this order
        labels = tuple(_labels(path, none))
        if info.length_min <= len(labels) <= info.length_max and labels not in scores:
            scores[labels] = string_score(probs, list(labels), "ctc", none)
            if scores[labels] > top:
                chosen, top = path, scores[labels]
    return chosen


def unmended(probs: np.ndarray, info: ModelInfo) -> str:
    """The string of the model's best path, before :func:`mend`."""
    best = probs.argmax(axis=1)
    return "".join(info.classes[best[s]] for s in _char_steps(best, probs, info.decoder, len(info.classes)))


def _labels(path: np.ndarray, none: int) -> list[int]:
    """A CTC path's string, as class indices: runs collapsed, blanks dropped."""
    return [int(k) for i, k in enumerate(path) if k != none and (i == 0 or k != path[i - 1])]


def confident(score: float, text: str, info: ModelInfo) -> bool:
    """What a sure answer needs from the reading alone: the calibrated score and a length the model reads."""
    return score >= info.reading.sure_min and fits(text, info)


def fits(text: str, info: ModelInfo) -> bool:
    """Whether ``text`` has a length the model reads: a reading of another length is surely wrong."""
    return info.length_min <= len(text) <= info.length_max
