"""What an exported model file carries besides its graph, in one place for every writer and reader.

export.py and tfjs.py write these keys (``kcaptcha.*`` in ONNX, ``userDefinedMetadata.kcaptcha``
in TF.js); solver.py and the page (through web/site.py's catalogue) read them. A key added later
gets its default here when an older file lacks it, so the format number changes only when a key
changes meaning. Pure Python: no onnxruntime, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

FORMAT_VERSION = "1"  # the kcaptcha.format this package writes and reads
DEFAULT_MODEL = "gnuboard5"  # the first model in the catalogue: the page's first choice, first on a tie
# What Solver(), the CLI and the service read with unless told otherwise: each input with the shipped model
# that fits it. A fixed default read other configurations wrong without a word (issue 15).
AUTO = "auto"
# The preset of a general model (kcaptcha-any, issue 13): trained on the whole KCAPTCHA space and read from any
# picture stretched to its input, so its input size is no captcha's. "auto" gives it every picture that is not a
# specialist's size, and a specialist's unsure answers for a second reading; locate never searches its shape.
GENERAL = "any"


@dataclass(frozen=True)
class Reading:
    """How a runtime turns one model's probabilities into an answer (Python and the page alike).

    Written into each model file, so the two runtimes and any future model agree without
    code changes; files exported before a field existed read its default.
    """

    low_confidence: float = 0.9  # characters below this get alternatives (and are shaded on the page)
    alternative_min: float = 0.02  # ...listing the other symbols at least this likely
    alternatives_max: int = 3
    # "auto" among same-size models: KCAPTCHA glyphs advance ~18 px each (14-24 px across the three fonts),
    # so the ink width says the string length. Real 160x60 images: 2 digits span 24-54 px, 6 digits 99-143 px.
    char_width: float = 18.0
    # An answer is sure when its score (the model's probability of the whole string, rounded to 4 places)
    # is at least this. Calibrated per model on generated validation images (tools/calibrate.py); files
    # that predate it read 0.99, a cautious guess.
    sure_min: float = 0.99
    # "auto" has the general model read again every sure answer of a preset model (another configuration of its size
    # and style may use symbols it never saw, which it reads as its own, sure: solver.general_doubts) except those
    # made only of these symbols. gnuboard5 trusts its own digits: the second reading would triple its 1 ms, and a
    # Gnuboard site that switched to hex or letters shows a letter in the reading. Empty: every answer is checked.
    trusted: str = ""

    @classmethod
    def from_meta(cls, meta: Mapping[str, object]) -> Reading:
        """The fields present in ``meta`` (bare keys; strings or numbers), defaults for the others."""
        values = {f.name: type(getattr(cls, f.name))(meta[f.name]) for f in fields(cls) if f.name in meta}
        return cls(**values)

    def to_meta(self) -> dict[str, str]:
        """ONNX-style metadata entries."""
        return {f"kcaptcha.{key}": str(value) for key, value in asdict(self).items()}


def bare(meta: Mapping[str, object]) -> dict[str, object]:
    """Metadata keys without the ONNX ``kcaptcha.`` prefix."""
    return {key.removeprefix("kcaptcha."): value for key, value in meta.items()}


def catalogue_key(name: str, width: int, height: int) -> tuple:
    """The order models are offered in (page selector, examples) and tried in by "auto" on a tie:
    the default model first, then by input size, so that models of one size sit together, then by name."""
    return name != DEFAULT_MODEL, width * height, width, name
