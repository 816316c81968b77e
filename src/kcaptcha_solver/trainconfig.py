"""One training run's settings: the dataclass the CLI's ``train`` options are generated from.

Apart from train.py so that building the CLI (and ``kcaptcha solve``) never imports torch.
Checkpoints and ``train_config.json`` store it as a dict; :meth:`TrainConfig.from_dict`
reads those back, old ones included.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from . import general
from .errors import ConfigError, did_you_mean
from .generator import SYMBOL_SETS, CaptchaConfig, config_from_dict, get_preset

RESERVED_SEEDS = range(70_000_000, 90_000_000)
# Keys of runs written before a field was renamed: old name -> new name. Fields added later need no
# entry: a run that lacks one gets its default.
RENAMED: dict[str, str] = {}


def option(default: Any, help: str, flag: str | None = None, recipe: bool | str = True, **extra: Any) -> Any:  # noqa: A002
    """A field with its ``kcaptcha train`` option: ``help``, and ``flag`` when it is not ``--field-name``.
    ``recipe=False`` marks how a machine runs the training (not what it learns): model cards leave it out;
    ``recipe="set"`` an option added later, named only when a run sets it (older cards' commands stay as run)."""
    meta = {"help": help, "flag": flag, "recipe": recipe, **extra}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """One training run. Defaults are the shipped gnuboard5 recipe."""

    preset: str = option("gnuboard5", "captcha preset (gnuboard5, seed-l2, kcaptcha-default), or 'any': a fresh "
                         "random configuration per image, read at 192x64 (the general model, general.py)")
    arch: str = option("cnn-small", "architecture name (see kcaptcha_solver.model.ARCHS)")
    epochs: int = option(12, "passes of steps x batch size fresh images")
    steps_per_epoch: int = option(200, "optimizer steps per epoch", flag="--steps")
    batch_size: int = option(96, "images per step")
    # Peak of the one-cycle schedule; AdamW copes with it from scratch.
    lr: float = option(3e-3, "peak learning rate (one-cycle)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    seed: int = option(1_000_000, "first training seed (sample k uses seed+k)")
    val_seed: int = option(90_000_000, "first validation seed")  # just above the reserved evaluation range
    val_count: int = option(2000, "validation images (drawn once)")
    # Per family (general.FAMILIES, preset 'any' only): 500 puts one image at 0.2 %, enough to see a weak family.
    family_count: int = option(500, "validation images per configuration family (preset 'any')")
    workers: int = option(1, "generator processes feeding the trainer (the main process trains)")
    threads: int = option(0, "torch threads (0: torch's default)", recipe=False)
    device: str = option("auto", "auto (a GPU when torch sees one, else the CPU), cpu, or cuda[:N]", recipe=False)
    fonts_dir: str | None = option(None, "folder with the KCAPTCHA font atlases", flag="--fonts", recipe=False)
    config: dict = option({}, "JSON file of CaptchaConfig fields: train for your own site's settings",
                          metavar="FILE.json")
    init: str | None = option(None, "start from these weights with a fresh schedule (fine-tune, e.g. a preset "
                              "model for your site's config)", metavar="CHECKPOINT")
    # Sites edit allowed_symbols more than anything else (Gnuboard's own config carries a hex line); a model that
    # never saw a symbol reads it as one of its own, often sure (solver.general_doubts). Issue 13.
    other_symbols: float = option(0.0, "share of images drawn with another of generator.SYMBOL_SETS' symbols than "
                                  "the config's (a site that edited allowed_symbols); the model reads all of them",
                                  recipe="set", metavar="SHARE")
    # Screens show the 160x60 captcha at 0.63x (desktop, DPR 1) to 1.9x (DPR 3); locate.py brings it back.
    screen: float = option(0.0, "share of images seen as a screenshot shows them (scaled --screen-min to "
                           "--screen-max and back), to read screenshots", metavar="SHARE")
    # Gnuboard's CSS draws any captcha 38 px high at DPR 1: 0.63x of 60 px, 0.41x of kcaptcha-default's 92.
    screen_min: float = option(0.55, "smallest scale of --screen's views (38 / image height reaches Gnuboard's "
                               "desktop skin at DPR 1)", metavar="SCALE")
    # Most views above ~0.6x read like the image itself: a lower top spends more of a run on the hard, small ones.
    screen_max: float = option(2.0, "largest scale of --screen's views", metavar="SCALE")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config stored by an earlier run: renamed keys migrated, missing ones defaulted,
        unknown ones refused (ConfigError with "did you mean")."""
        values = {RENAMED.get(key, key): value for key, value in values.items()}
        known = [f.name for f in fields(cls)]
        unknown = [key for key in values if key not in known]
        if unknown:
            hint = did_you_mean(unknown[0], known)
            raise ConfigError(f"unknown training setting {unknown[0]!r} (known: {', '.join(known)}){hint}")
        return cls(**values)

    @property
    def train_samples(self) -> int:
        return self.epochs * self.steps_per_epoch * self.batch_size

    @property
    def general(self) -> bool:
        """Whether this run trains the general model (a fresh configuration per image)."""
        return self.preset == general.NAME

    @property
    def families(self) -> list[str]:
        """The configuration families validated besides the main set ("any" is the main set itself)."""
        return [name for name in general.FAMILIES if name != general.NAME] if self.general else []

    @property
    def val_total(self) -> int:
        """Validation images of all sets: the main one, then each family's, in consecutive seeds."""
        return self.val_count + len(self.families) * self.family_count

    def captcha_config(self) -> CaptchaConfig:
        """The preset, with the custom ``config`` fields on top (not defined for the general model)."""
        if self.general:
            raise ConfigError("preset 'any' draws a new configuration per image: it has no single one")
        return config_from_dict(self.config, get_preset(self.preset))

    def reads_preset(self) -> bool:
        """Whether a model of this run reads its preset's captchas: trained on the preset itself, or on it with
        more symbols allowed (Gnuboard's kcaptcha_config.php has a commented-out hex line; a model trained on
        it reads both). Any other custom configuration makes a model of its own ("custom")."""
        if not self.config:
            return True
        base, mine = get_preset(self.preset), self.captcha_config()
        widened = replace(mine, name=base.name, allowed_symbols=base.allowed_symbols) == base
        return widened and set(base.allowed_symbols) <= set(mine.allowed_symbols)

    def task(self) -> general.Task:
        """Input size, symbols and lengths the network reads; a bad preset or ``config`` fails here."""
        if self.general:
            if self.config:
                raise ConfigError("--config sets one site's configuration; preset 'any' draws its own per image")
            return general.TASK
        captcha = self.captcha_config()
        return general.Task(*captcha.image_size, self.symbol_sets()[0] if self.other_symbols else captcha.classes,
                            captcha.length)

    def symbol_sets(self) -> list[str]:
        """With ``other_symbols``: the classes read (every set's symbols), then each other set's symbols that
        --other-symbols draws from, one picked per image (generator.SYMBOL_SETS less the config's own)."""
        own = self.captcha_config().classes
        others = sorted({"".join(sorted(s)) for s in SYMBOL_SETS.values()} - {own})
        return ["".join(sorted(set(own).union(*others))), *others]

    def check_seeds(self) -> None:
        """Refuse any training or validation seed in the reserved evaluation range."""
        for name, lo, n in (("training", self.seed, self.train_samples), ("validation", self.val_seed,
                                                                            self.val_total)):
            hi = lo + n - 1
            if lo < 0 or hi > 0xFFFFFFFF:
                raise ConfigError(f"{name} seeds {lo}..{hi} are outside 0..4294967295")
            if lo < RESERVED_SEEDS.stop and hi >= RESERVED_SEEDS.start:
                raise ConfigError(
                    f"{name} seeds {lo}..{hi} overlap 70,000,000-89,999,999, which is reserved for "
                    "evaluation sets; pick another --seed / --val-seed"
                )

    def recipe_args(self) -> list[str]:
        """The ``kcaptcha train`` options that reproduce what this run learns, every value explicit
        (machine settings left out; a custom ``config`` is named by its option, its values are in the run)."""
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "family_count" and not self.families:
                continue  # validates nothing outside preset any
            if f.metadata["recipe"] == "set" and value == default_of(f):
                continue
            if f.metadata["recipe"] and value not in (None, {}):
                args += [flag_of(f), "FILE.json" if isinstance(value, dict) else str(value)]
        return args


def flag_of(f) -> str:
    """A field's ``kcaptcha train`` option."""
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def default_of(f) -> Any:
    return f.default_factory() if f.default is MISSING else f.default
