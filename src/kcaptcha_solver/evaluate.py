"""Measure a model on a folder of labelled captchas (``<label>_<anything>.<ext>``).

Runs the exported ONNX model through the same :class:`Solver` users get (decode -> locate ->
route -> read, see solver.py), so the figures are those of the shipped artefact, not of
the training checkpoint. The pictures may be of any size up to a 4K screenshot: a bare captcha is
read whole, any other picture is searched and its first captcha read; a picture where none is found
counts as a wrong answer (read as ""), since finding it is part of reading it. ``"auto"`` (the
default) reads every size and reports which model read how many images; one named model skips the
pictures it would read whole at another size (a captcha of another size, or of a shape no captcha was
found in), since a resized reading would mix two measures, and names the model ``"auto"`` would give
the bare captchas that look like another model's (skipped or not). Unreadable, unlabelled or wrong-size files are
counted and reported, never fatal, unless nothing usable is left. Besides accuracy it counts the
sure answers (:attr:`Result.sure`) and how many of them are right: a wrong answer marked sure is
what the calibration (tools/calibrate.py) is there to prevent.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DatasetError, InputError, NoCaptchaError
from .inputs import to_rgb_array

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


@dataclass
class Report:
    """What ``kcaptcha evaluate`` prints (``--json`` prints ``to_dict()``)."""

    model: str
    count: int
    correct: int
    char_correct: int
    char_total: int
    sure: int = 0  # answers whose score reaches the model's sure_min (Result.sure)
    sure_correct: int = 0  # ... and that are right: the figure the calibration promises (>= 99.9 %)
    errors: list[dict] = field(default_factory=list)  # file, truth, prediction, model, confidence, score, sure, box
    skipped: list[dict] = field(default_factory=list)  # file, reason
    confusion: Counter = field(default_factory=Counter)  # (truth char, predicted char) -> count
    models: Counter = field(default_factory=Counter)  # model name -> images it read ("auto" routes each)
    # A named model only: the other model "auto" would read an image with -> how many (skipped ones included)
    elsewhere: Counter = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct / self.count

    @property
    def char_accuracy(self) -> float:
        return self.char_correct / self.char_total

    @property
    def share_sure(self) -> float:
        return self.sure / self.count

    @property
    def sure_accuracy(self) -> float | None:
        """Accuracy of the sure answers; None when no answer was sure."""
        return self.sure_correct / self.sure if self.sure else None

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "count": self.count,
            "accuracy": self.accuracy,
            "char_accuracy": self.char_accuracy,
            "share_sure": self.share_sure,
            "sure_accuracy": self.sure_accuracy,
            "sure_errors": self.sure - self.sure_correct,  # wrong answers marked sure: should be none
            "errors": self.errors,
            "skipped": self.skipped,
            "confusion": [{"truth": t, "prediction": p, "count": n} for (t, p), n in self.confusion.most_common()],
            "models": dict(self.models),
            "elsewhere": dict(self.elsewhere),
        }

    def advice(self) -> str:
        """What to run instead when images look like another model's; "" when none do."""
        if not self.elsewhere:
            return ""
        names = ", ".join(f"{name!r} ({n})" for name, n in self.elsewhere.most_common())
        single = f"--model {next(iter(self.elsewhere))} or " if len(self.elsewhere) == 1 else ""
        return (f"{sum(self.elsewhere.values())} images look like another model's: {names}; "
                f"evaluate them with {single}--model auto")


def label_of(path: Path) -> str | None:
    """The label in ``<label>_<anything>.<ext>``, or None when the name has none."""
    stem = path.stem
    if "_" not in stem:
        return None
    label = stem.rsplit("_", 1)[0]
    return label or None


def _read(path: Path) -> tuple[np.ndarray | None, str | None]:
    """Decoded RGB pixels (the solver's own decode stage), or the reason the file is skipped."""
    try:
        return to_rgb_array(path), None
    except InputError as exc:
        why = type(exc.__cause__).__name__ if exc.__cause__ else exc  # Pillow's words vary by file: its type
        return None, f"not a readable image ({why})"


def evaluate(model: str | os.PathLike[str], folder: str | os.PathLike[str], batch: int = 256,
             progress: bool = False) -> tuple[Report, list[tuple[np.ndarray, dict]]]:
    """Score ``model`` on ``folder``; returns the report and the error images for a gallery."""
    from tqdm import tqdm

    from .solver import Result, Solver, catalogue, route

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{folder} is empty: expected images named <label>_<anything>.<ext>")
    solver = Solver(model)
    size = None if solver.auto else (solver.width, solver.height)
    # What "auto" would choose among for a named model: itself first (it wins a tie), then the other shipped ones.
    rivals = [] if solver.auto else [solver.info, *(m for m in catalogue() if m.name != solver.name)]
    # Sizes read whole, never searched (Solver's bare captchas): a named model's and the other shipped ones'.
    bare = {(m.width, m.height) for m in (rivals or solver.models.values())}
    report = Report(model=solver.name, count=0, correct=0, char_correct=0, char_total=0)
    gallery: list[tuple[np.ndarray, dict]] = []
    usable: list[tuple[Path, str]] = []
    for path in files:
        label = label_of(path)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.skipped.append({"file": path.name, "reason": "not an image file name"})
        elif label is None:
            report.skipped.append({"file": path.name, "reason": "no <label>_ prefix in the name"})
        else:
            usable.append((path, label))
    bar = tqdm(total=len(usable), desc="evaluate", unit="img", disable=not progress, leave=False)
    for i in range(0, len(usable), batch):
        chunk, images, results = [], [], []  # results: None for a bare captcha, read below in one batch
        for path, label in usable[i : i + batch]:
            pixels, reason = _read(path)
            shape = pixels.shape[1::-1] if pixels is not None else None
            fitting = route(rivals, pixels) if rivals and shape in bare else None
            if fitting is not None and fitting.name != solver.name:
                report.elsewhere[fitting.name] += 1
            read = None
            if pixels is not None and shape not in bare:  # located and read at once, only the crop kept
                try:
                    read = solver.solve(pixels)
                except NoCaptchaError as exc:
                    read, pixels = exc, None
                else:
                    if read.box:
                        x, y, w, h = read.box
                        pixels = pixels[y:y + h, x:x + w].copy()  # the gallery shows what was read
            as_is = read is None or (isinstance(read, Result) and read.box is None)  # whole, not located
            if size and pixels is not None and as_is and shape != size:  # a resized read would mix two measures
                reason = f"size {shape[0]}x{shape[1]}, the model reads {size[0]}x{size[1]}"
            if reason:
                report.skipped.append({"file": path.name, "reason": reason})
                continue
            chunk.append((path, label))
            images.append(pixels)
            results.append(read)
        whole = [k for k, res in enumerate(results) if res is None]
        for k, res in zip(whole, solver.solve_many([images[k] for k in whole]), strict=True):
            results[k] = res
        for (path, label), pixels, res in zip(chunk, images, results, strict=True):
            report.count += 1
            report.char_total += len(label)
            if isinstance(res, NoCaptchaError):  # nothing read: wrong, unsure, and nothing to show in a gallery
                report.errors.append({"file": path.name, "truth": label, "prediction": "", "model": None,
                                      "confidence": [], "score": 0.0, "sure": False, "box": None,
                                      "error": str(res)})
                continue
            report.models[res.model] += 1
            pairs = list(zip(label, res.text, strict=False))  # a misread may be shorter or longer
            report.char_correct += sum(t == p for t, p in pairs)
            report.confusion.update((t, p) for t, p in pairs if t != p)
            report.sure += res.sure
            if res.text == label:
                report.correct += 1
                report.sure_correct += res.sure
            else:
                err = {"file": path.name, "truth": label, "prediction": res.text, "model": res.model,
                       "confidence": [round(float(c), 4) for c in res.confidence], "score": res.score,
                       "sure": res.sure, "box": list(res.box) if res.box else None}
                report.errors.append(err)
                gallery.append((pixels, err))
        bar.update(len(usable[i : i + batch]))
    bar.close()
    if report.count == 0:
        reasons = Counter(s["reason"] for s in report.skipped)
        raise DatasetError(
            f"no usable images in {folder}: "
            + "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3))
            + (f". {report.advice()}" if report.elsewhere else "")
        )
    return report, gallery


def format_report(report: Report, max_rows: int = 12) -> str:
    """A plain-text summary with the most frequent character confusions."""
    lines = [
        f"model {report.model}: {report.count} images",
        f"  full-string accuracy  {100 * report.accuracy:7.2f} %  ({report.correct}/{report.count})",
        f"  per-character         {100 * report.char_accuracy:7.3f} %  "
        f"({report.char_correct}/{report.char_total})",
        f"  sure answers          {100 * report.share_sure:7.2f} %  ({report.sure}/{report.count}), "
        + (f"{100 * report.sure_accuracy:.2f} % of them right ({report.sure_correct}/{report.sure})"
           if report.sure else "none"),
    ]
    if report.skipped:
        reasons = Counter(s["reason"] for s in report.skipped)
        lines.append(f"  skipped {len(report.skipped)}: " + "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3)))
    if report.elsewhere:
        lines.append(f"  {report.advice()}")
    if report.confusion:
        lines.append("  confusions (truth -> read: count): " + ", ".join(
            f"{t}->{p}: {n}" for (t, p), n in report.confusion.most_common(max_rows)))
    for err in report.errors[:max_rows]:
        if err.get("error"):
            lines.append(f"  wrong: {err['file']}  truth {err['truth']}  {err['error']}")
            continue
        conf = " ".join(f"{c:.2f}" for c in err["confidence"])
        mark = "SURE" if err["sure"] else "unsure"
        lines.append(f"  wrong: {err['file']}  truth {err['truth']}  read {err['prediction']}  conf [{conf}]  "
                     f"score {err['score']:.4f} {mark}")
    if len(report.errors) > max_rows:
        lines.append(f"  ... and {len(report.errors) - max_rows} more errors")
    return "\n".join(lines)


def write_gallery(gallery: list[tuple[np.ndarray, dict]], path: str | os.PathLike[str], limit: int = 48) -> Path:
    """One PNG of the misread images, each with truth, reading and the lowest confidence."""
    from PIL import ImageDraw

    items = gallery[:limit]
    h, w = (max(pixels.shape[i] for pixels, _ in items) for i in (0, 1))  # "auto" mixes sizes
    cols = min(4, len(items))
    rows = (len(items) + cols - 1) // cols
    cell_h = h + 30
    sheet = Image.new("RGB", (cols * (w + 8) + 8, rows * cell_h + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (pixels, err) in enumerate(items):
        x, y = 8 + (k % cols) * (w + 8), 8 + (k // cols) * cell_h
        sheet.paste(Image.fromarray(pixels), (x, y))
        low = min(err["confidence"]) if err["confidence"] else 0.0
        draw.text((x, y + h + 2), f"truth {err['truth']}", fill=(0, 110, 0))
        draw.text((x, y + h + 14), f"read  {err['prediction']}  min p {low:.2f}", fill=(180, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
