"""The ``kcaptcha`` command: one sub-command per verb, each importing its module only when run.

This is the only place that prints errors: library code raises
:class:`~kcaptcha_solver.errors.KcaptchaError`, and ``main`` turns it into one
``error: ...`` line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import KcaptchaError

Adder = Callable[[argparse._SubParsersAction], None]
VERBS: list[Adder] = []


def verb(fn: Adder) -> Adder:
    """Register a function that adds one sub-command (its parser sets ``run``)."""
    VERBS.append(fn)
    return fn


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kcaptcha",
        description="Generate, train on, and solve KCAPTCHA images (the Gnuboard 5 captcha).",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    for add in VERBS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except KcaptchaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- verbs ---------------------------------------------------------------------
# Each adder below defines one sub-command; keep them in the order of the data path:
# fonts, generate, train, export, evaluate, models, solve, serve, web, site.


if __name__ == "__main__":
    sys.exit(main())
