"""Training: fresh captchas from the generator every step, one visible loop.

No dataset lives on disk: worker processes draw images with the bit-exact
generator (JPEG round trip included when the preset writes JPEG), so the
network sees exactly the distribution the PHP program produces. Sample ``k``
of a run is drawn from seed ``seed + k``; validation uses a separate seed
range. Seeds 70,000,000-89,999,999 are reserved for evaluation sets and refused.
Preset ``any`` trains the general model: sample ``k`` is also a fresh configuration
(general.py), and validation adds one fixed set per configuration family.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from . import general
from .errors import ConfigError, ModelError
from .generator import Generator
from .locate import RESAMPLE
from .model import ModelSpec, build, greedy_decode, load_checkpoint
from .trainconfig import TrainConfig


def pick_device(name: str) -> torch.device:
    """The torch device for ``name`` ("auto", "cpu", "cuda", "cuda:1", ...); a clear error if absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: torch sees no GPU (this torch build or machine has none)")
    return device


def device_name(device: torch.device) -> str:
    """What ran the training, for the metrics and the model card."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def targets_for(labels: list[str], classes: str, positions: int) -> np.ndarray:
    """Class indices ``[batch, positions]``; positions past the end get the "none" class."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.full((len(labels), positions), len(classes), dtype=np.int64)
    for row, text in enumerate(labels):
        out[row, : len(text)] = [index[c] for c in text]
    return out


class CaptchaStream(IterableDataset):
    """Batches of ``(uint8 images, targets)`` for samples ``first .. first + count - 1``.

    Worker ``w`` of ``W`` draws the batches ``w, w + W, ...`` so that the run is
    the same whatever the number of workers, apart from batch order.
    """

    def __init__(self, cfg: TrainConfig, first: int, count: int) -> None:
        self.cfg, self.first, self.count = cfg, first, count

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        draw = drawer(self.cfg)
        task = self.cfg.task()
        bs = self.cfg.batch_size
        for b in range(wid, self.count // bs, nw):
            start = self.cfg.seed + self.first + b * bs
            images, labels = zip(*(draw(start + i) for i in range(bs)), strict=True)
            images = np.stack(images)
            screen_views(images, self.cfg, start)
            yield torch.from_numpy(images), torch.from_numpy(targets_for(list(labels), task.classes, task.length[1]))


# Screens show Gnuboard's 160x60 captcha at 0.633x its pixels (38 CSS px high inside a 40-px border box)
# times the device-pixel-ratio: 0.63 at DPR 1, 0.79 at 1.25, 0.95 at 1.5, 1.27 at 2, 1.9 at 3; locate.py
# brings it back to the model's size. --screen trains on such views (benchmarks/screenshots.py).
SCREEN_MAX = 2.0
SCREEN_FILTERS = (Image.BILINEAR, Image.BICUBIC, Image.HAMMING, Image.LANCZOS)  # other browsers, other filters
# Chromium's own downscale (browser_resize) draws this share of the screen views: the screenshots people paste
# are mostly its, and it does not average over a screen pixel's footprint as PIL's filters do.
BROWSER_SHARE = 0.5
# Where a found box's edges fall, in screen pixels inside the image (negative: outside, on its border): of 1,920
# edges found in Chromium's screenshots of 24 real images (kcaptcha-default and gnuboard5, both skins, DPR 1-3,
# loose and form crops), 90 % lie within -0.56 .. 0.98 and 98 % within -0.96 .. 1.16. And the colours of
# Gnuboard's 1-px border round the image (#898989 in default.css and mobile.css, #e9e9e9 for m_captcha).
CROP_EDGE = (-0.75, 1.0)
BORDERS = ((137, 137, 137), (233, 233, 233))


def init_from(model: nn.Module, start: nn.Module, path: str) -> None:
    """--init: ``start``'s weights into ``model``. Another architecture is fine when its weights fit (e.g.
    ctc-small -> ctc-fine). A start that reads a subset of the symbols (a preset model, for a site that allows
    more, such as Gnuboard's hex line) hands each of its symbols' output rows to the same symbol; the new
    symbols' rows keep their fresh initialisation."""
    old, new = start.spec, model.spec
    if replace(old, arch=new.arch, classes=new.classes) != new or not set(old.classes) <= set(new.classes):
        raise ModelError(f"--init {path} is a model for another task ({old})")
    weights = start.state_dict()
    if old.classes != new.classes:
        rows = [new.classes.index(c) for c in old.classes] + [len(new.classes)]  # "none" stays last
        fresh = model.state_dict()
        for key in ("head.weight", "head.bias"):  # [steps or positions x (symbols + 1), ...]
            widened = fresh[key].clone().unflatten(0, (-1, len(new.classes) + 1))
            widened[:, rows] = weights[key].unflatten(0, (-1, len(old.classes) + 1))
            weights[key] = widened.flatten(0, 1)
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise ModelError(f"--init {path}: {old.arch} weights do not fit {new.arch}") from None


def screen_view(image: np.ndarray, rng: np.random.Generator, smallest: float, largest: float = SCREEN_MAX
                ) -> np.ndarray:
    """``image`` as a screen shows it (a random scale from ``smallest`` to ``largest``, filter and pixel-grid
    offset), cut where locate.py might cut it and brought back to its size as locate.py does: what the solver
    reads from a screenshot.

    The cut: locate.py's box is whole screen pixels, and each of its edges falls from most of a pixel outside the
    image (a column of its border, blended) to a pixel inside it (CROP_EDGE). Reading held-out real screenshots
    of kcaptcha-default at DPR 1.25 with each edge of the found box moved by -1, 0 or +1 pixel read 93 % right
    from the found box alone, and 100 % from at least one of the 81 boxes: the reader must not depend on it."""
    h, w = image.shape[:2]
    f = rng.uniform(smallest, largest)
    pad = int(np.ceil(2 / f))  # the border round the image, in its pixels: more than the cut can reach
    framed = np.empty((h + 2 * pad, w + 2 * pad, 3), np.uint8)
    framed[:] = BORDERS[rng.integers(len(BORDERS))]
    framed[pad:pad + h, pad:pad + w] = image
    x0, y0 = rng.uniform(*CROP_EDGE, 2)  # the left and top edges, in screen pixels inside the image
    cols, rows = (_cut(n * f - start, rng) for n, start in ((w, x0), (h, y0)))
    box = (pad + x0 / f, pad + y0 / f, pad + (x0 + cols) / f, pad + (y0 + rows) / f)
    if rng.random() < BROWSER_SHARE:
        small = Image.fromarray(browser_resize(framed, (cols, rows), box))
    else:
        small = Image.fromarray(framed).resize((cols, rows), SCREEN_FILTERS[rng.integers(len(SCREEN_FILTERS))], box=box)
    return np.asarray(small.resize((w, h), RESAMPLE))


def _cut(span: float, rng: np.random.Generator) -> int:
    """A box's width in whole screen pixels from its first edge, when the image's far edge lies ``span`` screen
    pixels away: one (at random, if two do) that leaves that edge within CROP_EDGE of the box's."""
    lo, hi = CROP_EDGE
    return max(1, int(rng.integers(np.ceil(span - hi), np.floor(span - lo) + 1)))


def browser_resize(image: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """The ``box`` (x0, y0, x1, y1) of ``image`` (uint8 [H, W, 3]) drawn ``size`` (width, height) as Chromium draws
    a shrunk image: from the mipmap level at which it is still shrunk less than 2x (each level the mean of 2x2
    pixels of the one before), sampled bilinearly at each screen pixel's centre. Measured against Chromium's
    renders of real captchas (tests/test_train.py): within about 1 level, where PIL's filters, which average
    over each screen pixel's footprint, are 3-10 levels off. Sampling a level directly aliases thin strokes
    at 0.5-0.9x: a kcaptcha-default image 83 px wide (0.52x) reads 98.0 % as Chromium draws it against 99.3 %
    as PIL's bicubic does (150 real images)."""
    width, height = size
    x0, y0, x1, y1 = box
    sx, sy = (x1 - x0) / width, (y1 - y0) / height  # image pixels per screen pixel
    level, step = image.astype(np.float64), 1
    while min(sx, sy) / step >= 2 and min(level.shape[:2]) >= 2:
        h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
        level = level[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))
        step *= 2
    # Screen pixel centres in the level's pixels, counted from its first pixel's centre.
    u = np.clip((x0 + (np.arange(width) + 0.5) * sx) / step - 0.5, 0, level.shape[1] - 1)
    v = np.clip((y0 + (np.arange(height) + 0.5) * sy) / step - 0.5, 0, level.shape[0] - 1)
    j, i = np.floor(u).astype(np.intp), np.floor(v).astype(np.intp)
    j1, i1 = np.minimum(j + 1, level.shape[1] - 1), np.minimum(i + 1, level.shape[0] - 1)
    fx, fy = (u - j)[None, :, None], (v - i)[:, None, None]
    rows = level[i] * (1 - fy) + level[i1] * fy
    return np.clip(np.rint(rows[:, j] * (1 - fx) + rows[:, j1] * fx), 0, 255).astype(np.uint8)


def screen_views(images: np.ndarray, cfg: TrainConfig, seed: int) -> None:
    """Replace about ``cfg.screen`` of a uint8 batch [B, H, W, 3] by screen views, in place."""
    if not cfg.screen:
        return
    rng = np.random.default_rng(seed)
    for i in np.flatnonzero(rng.random(len(images)) < cfg.screen):
        images[i] = screen_view(images[i], rng, cfg.screen_min, cfg.screen_max)


OTHER_SYMBOLS_STREAM = 0x53594D  # --other-symbols picks a set per seed from its own random stream


def drawer(cfg: TrainConfig, family: str = general.NAME) -> Callable[[int], tuple[np.ndarray, str]]:
    """seed -> (the image as the network reads it, its label): the preset's, or one of the general model's."""
    if cfg.general:
        return lambda seed: general.draw(seed, cfg.fonts_dir, family)
    config = cfg.captcha_config()
    gens = [Generator(config, fonts_dir=cfg.fonts_dir)]
    if cfg.other_symbols:
        gens += [Generator(replace(config, allowed_symbols=s), fonts_dir=cfg.fonts_dir) for s in cfg.symbol_sets()[1:]]

    def draw(seed: int) -> tuple[np.ndarray, str]:
        pick = np.random.default_rng([seed, OTHER_SYMBOLS_STREAM]).random()  # apart from the generator's own stream
        gen = gens[0] if pick >= cfg.other_symbols else gens[1 + int(pick / cfg.other_symbols * (len(gens) - 1))]
        sample = gen.draw(seed, boxes=False)
        return sample.pixels(), sample.label

    return draw


def make_validation(cfg: TrainConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation sets, drawn once: ``""`` the main one, then one per family (preset any)."""
    task = cfg.task()
    sets = {}
    first = cfg.val_seed
    for family, count in [("", cfg.val_count)] + [(f, cfg.family_count) for f in cfg.families]:
        draw = drawer(cfg, family or general.NAME)
        images, labels = zip(*(draw(first + i) for i in range(count)), strict=True)
        images = np.stack(images)
        screen_views(images, cfg, first)  # the same mix as training, so "best" means best on it
        sets[family] = (torch.from_numpy(images),
                        torch.from_numpy(targets_for(list(labels), task.classes, task.length[1])))
        first += count
    return sets


def loss_fn(model: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per position, or CTC with the "none" class as blank."""
    blank = logits.shape[-1] - 1
    if model.decoder == "positions":
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    log_probs = logits.log_softmax(-1).transpose(0, 1)  # (steps, B, K+1)
    steps = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
    return nn.functional.ctc_loss(log_probs, targets, steps, (targets != blank).sum(1), blank=blank,
                                  zero_infinity=True)


def score(model: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int, int]:
    """(strings right, characters right at their position, characters) for one batch."""
    blank = logits.shape[-1] - 1
    right = chars_right = chars = 0
    for pred, truth in zip(greedy_decode(logits, model.decoder, blank), targets.tolist(), strict=True):
        truth = [c for c in truth if c != blank]
        right += pred == truth
        chars_right += sum(p == t for p, t in zip(pred, truth, strict=False))
        chars += len(truth)
    return right, chars_right, chars


@torch.no_grad()
def evaluate_tensors(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch: int = 500):
    """(full-string accuracy, per-character accuracy, mean loss) on tensors."""
    model.eval()
    right = chars_right = chars = 0
    loss = 0.0
    for i in range(0, len(images), batch):
        logits = model(images[i : i + batch])
        t = targets[i : i + batch]
        loss += loss_fn(model, logits, t).item() * len(t)
        r, cr, c = score(model, logits, t)
        right, chars_right, chars = right + r, chars_right + cr, chars + c
    return right / len(images), chars_right / chars, loss / len(images)


def save_checkpoint(path: Path, model: nn.Module, spec: ModelSpec, cfg: TrainConfig, **extra) -> None:
    """Write atomically: a crash mid-save must not destroy the last good checkpoint."""
    tmp = path.with_suffix(".tmp")
    weights = {k: v.cpu() for k, v in model.state_dict().items()}  # loadable without the GPU
    torch.save({"spec": spec.to_dict(), "model": weights, "preset": cfg.preset,
                "train_config": asdict(cfg), **extra}, tmp)
    os.replace(tmp, path)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, as a PNG people can glance at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(ep, [r["train_loss"] for r in rows], label="train")
    a.plot(ep, [r["val_loss"] for r in rows], label="validation")
    a.set(xlabel="epoch", ylabel="loss (cross-entropy or CTC)", yscale="log", title="loss")
    a.legend()
    b.plot(ep, [100 * r["val_acc"] for r in rows], label="full string")
    b.plot(ep, [100 * r["val_char_acc"] for r in rows], label="per character")
    b.set(xlabel="epoch", ylabel="%", title="validation accuracy", ylim=(max(0, 100 * min(
        r["val_acc"] for r in rows) - 2), 100.2))
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(
    cfg: TrainConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Run (or resume) training into ``out``; returns the best validation metrics.

    ``progress`` shows a bar per epoch; ``on_epoch`` gets each epoch's metrics row (epoch, samples,
    wall_s, lr, train_loss, val_loss, val_acc, val_char_acc, device) once its checkpoints are written.
    """
    from tqdm import tqdm

    out = Path(out)
    cfg.check_seeds()
    for name, share in (("screen", cfg.screen), ("other-symbols", cfg.other_symbols)):
        if not 0 <= share <= 1:
            raise ConfigError(f"{name} share must be between 0 and 1, got {share}")
    if cfg.other_symbols and cfg.general:
        raise ConfigError("--other-symbols widens a preset's symbols; preset 'any' draws its own per image")
    if not 0.1 <= cfg.screen_min <= cfg.screen_max <= SCREEN_MAX:
        raise ConfigError(f"--screen-min and --screen-max must be scales with 0.1 <= min <= max <= {SCREEN_MAX}, "
                          f"got {cfg.screen_min} and {cfg.screen_max}")
    task = cfg.task()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    hardware = device_name(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input sizes: let cuDNN pick kernels
    torch.manual_seed(cfg.seed)
    spec = ModelSpec(arch=cfg.arch, height=task.height, width=task.width, positions=task.length[1],
                     classes=task.classes)
    model = build(spec)
    if cfg.init and not resume:
        start, _ = load_checkpoint(cfg.init)
        init_from(model, start, cfg.init)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    history: list[dict] = []
    start_epoch, best, wall = 0, -1.0, 0.0
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise ModelError(f"nothing to resume: {last} does not exist")
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start_epoch, best, wall = ckpt["history"], ckpt["epoch"] + 1, ckpt["best"], ckpt["wall"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    val_sets = {name: (images.to(device), targets.to(device)) for name, (images, targets)
                in make_validation(cfg).items()}
    per_epoch = cfg.steps_per_epoch * cfg.batch_size
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        stream = CaptchaStream(cfg, epoch * per_epoch, per_epoch)
        loader = DataLoader(stream, batch_size=None, num_workers=cfg.workers,
                            persistent_workers=False, prefetch_factor=4 if cfg.workers else None,
                            pin_memory=device.type == "cuda")
        model.train()
        bar = tqdm(loader, total=cfg.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, leave=False)
        run_loss = 0.0
        for step, (images, targets) in enumerate(bar, 1):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            logits = model(images)
            loss = loss_fn(model, logits, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item()
            if step % 10 == 0:
                acc = score(model, logits.detach(), targets)[0] / len(targets)
                bar.set_postfix(loss=f"{run_loss / step:.4f}", acc=f"{acc:.3f}")
        val_acc, val_char, val_loss = evaluate_tensors(model, *val_sets[""])
        families = {f"val_acc_{name}": evaluate_tensors(model, *tensors)[0] for name, tensors in val_sets.items()
                    if name}
        wall += time.time() - t0
        row = {"epoch": epoch + 1, "samples": (epoch + 1) * per_epoch, "wall_s": round(wall, 1),
               "lr": sched.get_last_lr()[0], "train_loss": run_loss / max(step, 1), "val_loss": val_loss,
               "val_acc": val_acc, "val_char_acc": val_char, **families, "device": hardware}
        history.append(row)
        # Ties in accuracy are common near the end: the lower validation loss wins them.
        rank = val_acc - 1e-3 * min(val_loss, 1.0)
        if rank > best:
            best = rank
            save_checkpoint(out / "best.pt", model, spec, cfg, metrics=row)
        save_checkpoint(last, model, spec, cfg, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                        history=history, epoch=epoch, best=best, wall=wall)
        with open(out / "metrics.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(history)
        plot_curves(history, out / "curves.png")
        if on_epoch:
            on_epoch(row)
    return max(history, key=lambda r: r["val_acc"]) if history else {}


def describe(cfg: TrainConfig) -> str:
    """One line for logs: what is being trained on how many images."""
    return (f"{cfg.preset} / {cfg.arch}: {cfg.epochs} epochs x {cfg.steps_per_epoch} steps x "
            f"{cfg.batch_size} = {cfg.train_samples:,} images, seeds {cfg.seed}..{cfg.seed + cfg.train_samples - 1}"
            f", validation {cfg.val_count} from {cfg.val_seed}"
            + (f" + {cfg.family_count} per family x {len(cfg.families)}" if cfg.families else ""))
