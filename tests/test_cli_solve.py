"""``kcaptcha solve`` on the real PHP images, in-process through ``main`` (and once as a real command)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import label, sample_files

from kcaptcha_solver.cli import main
from kcaptcha_solver.solver import MODELS_DIR


@pytest.fixture(scope="module")
def gnuboard5_files(shared_dir: Path) -> list[Path]:
    return sample_files(shared_dir / "gnuboard5")[:5]


def test_one_line_per_file(gnuboard5_files: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", *map(str, gnuboard5_files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{p} {label(p)}" for p in gnuboard5_files]


def test_json_gives_the_full_result(gnuboard5_files: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "--json", str(gnuboard5_files[0])]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["file"] == str(gnuboard5_files[0]) and row["text"] == label(gnuboard5_files[0])
    assert row["model"] == "gnuboard5" and len(row["confidence"]) == 6 and row["resized"] is False
    assert {"alternatives", "ms"} <= set(row)


def test_dash_reads_stdin(
    gnuboard5_files: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = SimpleNamespace(buffer=io.BytesIO(gnuboard5_files[0].read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["solve", "-"]) == 0
    assert capsys.readouterr().out == f"- {label(gnuboard5_files[0])}\n"


def test_model_option_auto_and_path(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = sample_files(shared_dir / "seed-l2")[0]
    default = sample_files(shared_dir / "kcaptcha-default")[0]
    assert main(["solve", "--model", "auto", str(seed), str(default)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{seed} {label(seed)}", f"{default} {label(default)}"]
    assert main(["solve", "--model", str(MODELS_DIR / "seed-l2.onnx"), str(seed)]) == 0
    assert capsys.readouterr().out == f"{seed} {label(seed)}\n"


def test_a_bad_file_fails_at_the_end_and_the_rest_is_solved(
    gnuboard5_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "missing.png"
    good = gnuboard5_files[:2]
    assert main(["solve", str(good[0]), str(bad), str(missing), str(good[1])]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{p} {label(p)}" for p in good]
    assert f"error: {bad}: " in err and f"error: {missing}: cannot read" in err
    assert "2 of 4 files could not be read" in err


def test_json_gives_a_line_with_the_error_for_a_bad_file(
    gnuboard5_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["solve", "--json", str(bad), str(gnuboard5_files[0])]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["file"] for row in rows] == [str(bad), str(gnuboard5_files[0])]
    assert set(rows[0]) == {"file", "error"} and rows[0]["error"].startswith("not an image")
    assert rows[1]["text"] == label(gnuboard5_files[0]) and "error" not in rows[1]


def test_unknown_model_is_one_error_line(
    gnuboard5_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["solve", "--model", "seed-l3", str(gnuboard5_files[0])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'seed-l3'") and "did you mean 'seed-l2'" in err


@pytest.mark.slow
def test_the_installed_command(gnuboard5_files: list[Path]) -> None:
    exe = shutil.which("kcaptcha", path=str(Path(sys.executable).parent))
    assert exe, "the kcaptcha console script is not installed next to this Python"
    done = subprocess.run([exe, "solve", "-"], input=gnuboard5_files[0].read_bytes(), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"- {label(gnuboard5_files[0])}\n"
