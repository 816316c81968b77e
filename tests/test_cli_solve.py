"""``kcaptcha solve`` on the real PHP images and mp3s, in-process through ``main`` (and once as a real command)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import label, sample_files
from PIL import Image
from test_locate import on_page

from kcaptcha_solver.cli import main
from kcaptcha_solver.solver import MODELS_DIR, Solver, read_model_info


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
    assert row["sure"] is True and row["score"] >= read_model_info(MODELS_DIR / "gnuboard5.onnx").reading.sure_min


def test_dash_reads_stdin(
    gnuboard5_files: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = SimpleNamespace(buffer=io.BytesIO(gnuboard5_files[0].read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["solve", "-"]) == 0
    assert capsys.readouterr().out == f"- {label(gnuboard5_files[0])}\n"


def test_the_default_reads_every_configuration_and_mp3s(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --model: "auto" for the images (issue 15), the voice set for the spoken captchas (issue 14)."""
    files = [sample_files(shared_dir / name)[0] for name in ("gnuboard5", "seed-l2", "kcaptcha-default")]
    files += [sample_files(shared_dir / "audio" / voice)[0] for voice in ("basic", "jmoon")]
    assert main(["solve", *map(str, files)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{p} {label(p)}" for p in files] and err == ""
    assert main(["solve", "--json", *map(str, files)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["text"], r["model"], r["kind"]) for r in rows] == [
        (label(files[0]), "gnuboard5", "image"), (label(files[1]), "seed-l2", "image"),
        (label(files[2]), "kcaptcha-default", "image"), (label(files[3]), "basic", "audio"),
        (label(files[4]), "jmoon", "audio")]


def test_a_forced_model_on_another_models_image_warns(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    default = sample_files(shared_dir / "kcaptcha-default")[0]
    own = sample_files(shared_dir / "gnuboard5")[0]
    assert main(["solve", "--model", "gnuboard5", str(default), str(own)]) == 0  # read, as asked, but not silently
    out, err = capsys.readouterr()
    unsure, sure = out.splitlines()
    assert re.fullmatch(rf"{re.escape(str(default))} [0-9a-f]{{6}}  unsure \(score [01]\.[0-9]{{4}}\)", unsure), unsure
    assert sure == f"{own} {label(own)}"  # a sure answer is the bare line
    assert err == (f"warning: {default}: this 160x92 image looks like one for model 'kcaptcha-default', not "
                   "'gnuboard5': the answer is likely wrong (use model 'auto' or 'kcaptcha-default')\n")
    assert main(["solve", "--json", "--model", "gnuboard5", str(default), str(own)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "'kcaptcha-default'" in rows[0]["warning"] and rows[1]["warning"] is None
    assert [r["sure"] for r in rows] == [False, True] and rows[0]["score"] < rows[1]["score"]


def test_an_answer_the_general_model_doubts_says_why(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """auto: kcaptcha-default's sure reading of qxixc (its score reaches the model's sure_min), which the
    general model reads qxpxc, is unsure, and the warning line names the other reading; --json carries it in
    "warning"."""
    path = next((shared_dir / "kcaptcha-default").glob("qxixc_*"))
    assert main(["solve", str(path)]) == 0
    out, err = capsys.readouterr()
    score = re.fullmatch(rf"{re.escape(str(path))} qxixc  unsure \(score ([01]\.[0-9]{{4}})\)\n", out)
    assert score and float(score[1]) >= read_model_info(MODELS_DIR / "kcaptcha-default.onnx").reading.sure_min, out
    assert err == f"warning: {path}: the general model 'kcaptcha-any' reads it as 'qxpxc': the answer is unsure\n"
    assert main(["solve", "--json", str(path)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["model"], row["sure"], row["warning"]) == (
        "kcaptcha-default", False, "the general model 'kcaptcha-any' reads it as 'qxpxc': the answer is unsure")


def test_a_bad_mp3_is_an_error_line_and_the_rest_is_read(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = sample_files(shared_dir / "audio" / "jmoon")[0]
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(good.read_bytes()[:-100])
    assert main(["solve", str(cut), str(good)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{good} {label(good)}\n"
    assert err.startswith(f"error: {cut}: voice 'jmoon' read ") and "a truncated download?" in err
    assert err.endswith("error: 1 of 2 files could not be read\n")
    assert main(["solve", "--json", str(cut)]) == 1
    row = json.loads(capsys.readouterr().out)
    assert set(row) == {"file", "error"} and "a truncated download?" in row["error"]


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


def test_a_screenshot_prints_the_box_and_a_picture_without_a_captcha_fails(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = sample_files(shared_dir / "gnuboard5")[3]
    shot = tmp_path / "shot.png"
    on_page(np.asarray(Image.open(src).convert("RGB")), 2.0, (301, 97)).save(shot)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (1280, 720), "white").save(blank)
    white = tmp_path / "white.png"  # a captcha's size, read whole: no ink, no captcha (not 111111)
    Image.new("RGB", (160, 60), "white").save(white)
    assert main(["solve", str(shot), str(blank), str(white)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{shot} {label(src)}  at 301,97 320x120  unsure (score {Solver().solve(shot).score:.4f})\n"
    assert err == (f"error: {blank}: no captcha found in this 1280x720 picture\n"
                   f"error: {white}: no captcha found in this 160x60 picture: it has no ink\n"
                   "error: 2 of 3 files could not be read\n")
    assert main(["solve", "--json", str(shot), str(blank)]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (rows[0]["text"], rows[0]["box"], rows[0]["resized"]) == (label(src), [301, 97, 320, 120], True)
    assert rows[1] == {"file": str(blank), "error": "no captcha found in this 1280x720 picture"}
