"""The command itself: --version, ``python -m kcaptcha_solver``, defaults in --help, and the install advice
that ``train`` and ``export`` give when the ``[train]`` extra is missing."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sample_files

from kcaptcha_solver import __version__
from kcaptcha_solver.cli import build_parser, main


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser below it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += parsers(child)
    return found


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"kcaptcha {__version__}\n"


def test_python_dash_m_runs_the_command(shared_dir: Path) -> None:
    image = sample_files(shared_dir / "gnuboard5")[0]
    command = [sys.executable, "-m", "kcaptcha_solver", "solve", str(image)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{image} {image.name.split('_')[0]}\n"


def test_help_shows_every_default(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per option, so each help can be read whole
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  --")}
    assert lines["--count"].endswith("default: 100") and lines["--seed"].endswith("default: 0")
    assert lines["--preset"].endswith("(default: gnuboard5)")
    assert "default" not in lines["--manifest"]  # a flag is off unless given
    for parser in parsers(build_parser()):
        text = parser.format_help()
        assert "default: None" not in text and "default: False" not in text, parser.prog
        for action in parser._actions:
            if action.option_strings and not any(action.default is v for v in (None, False, argparse.SUPPRESS)):
                assert "default" in action.help, f"{parser.prog} {action.option_strings[0]}"


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["train", "--epochs", "1"], {"torch": None}),
        (["export", "best.pt"], {"torch": None}),
        (["export", "best.pt"], {"torch": None, "onnx": None}),
    ],
)
def test_train_and_export_without_torch_give_the_install_line(
    argv: list[str], missing: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """As after ``pip install kcaptcha-solver``: no traceback, one line, nothing written."""
    for name in [*missing, "kcaptcha_solver.train", "kcaptcha_solver.export", "kcaptcha_solver.model"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import fails as if not installed
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: kcaptcha {argv[0]} needs {', '.join(missing)}: pip install 'kcaptcha-solver[train]'\n"
    assert not out.exists()
