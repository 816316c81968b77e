"""``kcaptcha evaluate`` on folders that mix configurations: "auto" by default, advice for a named model,
and an error gallery only where asked. The real PHP images are linked into tmp_path, never copied."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import label, sample_files
from PIL import Image
from test_locate import on_page

from kcaptcha_solver.cli import main

COUNTS = {"gnuboard5": 6, "seed-l2": 4, "kcaptcha-default": 3}  # images of each preset in the mixed folder


def linked(folder: Path, sources: list[Path]) -> Path:
    folder.mkdir()
    for src in sources:
        (folder / src.name).symlink_to(src)
    return folder


@pytest.fixture()
def mixed(shared_dir: Path, tmp_path: Path) -> Path:
    return linked(tmp_path / "mixed", [p for name, n in COUNTS.items() for p in sample_files(shared_dir / name)[:n]])


def test_the_default_is_auto_and_reads_a_mixed_folder(
    mixed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(mixed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["model"], report["count"], report["accuracy"]) == ("auto", 13, 1.0)
    assert report["models"] == COUNTS and report["skipped"] == [] and report["elsewhere"] == {}
    assert report["sure_errors"] == 0 and report["sure_accuracy"] == 1.0 and report["share_sure"] >= 0.75


def test_a_named_model_names_the_model_for_the_images_it_skips_or_misreads(
    mixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(mixed), "--model", "gnuboard5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 10 and len(report["skipped"]) == 3  # the 160x92 ones
    assert {s["reason"] for s in report["skipped"]} == {"size 160x92, the model reads 160x60"}
    assert report["elsewhere"] == {"kcaptcha-default": 3, "seed-l2": 4}  # seed-l2's are its size: read, and wrong
    assert main(["evaluate", str(mixed), "--model", "gnuboard5"]) == 0
    assert ("  7 images look like another model's: 'seed-l2' (4), 'kcaptcha-default' (3); evaluate them with "
            "--model auto\n") in capsys.readouterr().out


def test_a_folder_of_another_models_size_says_which_model(shared_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = linked(tmp_path / "default", sample_files(shared_dir / "kcaptcha-default")[:4])
    assert main(["evaluate", str(folder), "--model", "seed-l2"]) == 1
    assert capsys.readouterr().err == (
        f"error: no usable images in {folder}: 4 x size 160x92, the model reads 160x60. 4 images look like "
        "another model's: 'kcaptcha-default' (4); evaluate them with --model kcaptcha-default or --model auto\n")


def test_the_error_gallery_is_written_only_where_asked(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = linked(tmp_path / "gnuboard5", sample_files(shared_dir / "gnuboard5")[:4])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["evaluate", str(folder), "--model", "seed-l2"]) == 0  # every image misread
    out = capsys.readouterr().out
    assert "  sure answers             0.00 %  (0/4), none\n" in out  # a model forced on another's images
    assert out.count(" unsure\n") == 4 and " SURE\n" not in out
    assert "  (--gallery PATH.png writes the misread images)\n" in out and "error gallery" not in out
    assert list(work.iterdir()) == []
    gallery = tmp_path / "out" / "errors.png"
    assert main(["evaluate", str(folder), "--model", "seed-l2", "--gallery", str(gallery)]) == 0
    assert f"  error gallery: {gallery}\n" in capsys.readouterr().out and gallery.stat().st_size > 0
    assert main(["evaluate", str(folder), "--model", "seed-l2", "--json", "--gallery", str(gallery)]) == 0
    assert json.loads(capsys.readouterr().out)["gallery"] == str(gallery)
    assert main(["evaluate", str(folder), "--gallery", str(tmp_path / "none.png")]) == 0  # auto: no errors
    assert f"  no errors: no gallery written to {tmp_path / 'none.png'}\n" in capsys.readouterr().out
    assert not (tmp_path / "none.png").exists() and list(work.iterdir()) == []


def test_pictures_of_any_size_are_located_and_a_missing_captcha_is_wrong(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = linked(tmp_path / "shots", sample_files(shared_dir / "gnuboard5")[:2])
    src = sample_files(shared_dir / "gnuboard5")[3]
    on_page(np.asarray(Image.open(src).convert("RGB")), 2.0, (301, 97), size=(1920, 1080)).save(
        folder / f"{label(src)}_page.png")
    Image.new("RGB", (800, 600), "white").save(folder / "123456_blank.png")
    Image.new("RGB", (160, 60), "white").save(folder / "654321_white.png")  # a captcha's size: read whole, no ink
    assert main(["evaluate", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["count"], report["accuracy"], report["skipped"], report["models"]) == (
        5, 0.6, [], {"gnuboard5": 3})
    missing = {"truth": "123456", "prediction": "", "model": None, "confidence": [], "score": 0.0, "sure": False,
               "box": None}
    assert report["errors"] == [
        {"file": "123456_blank.png", **missing, "error": "no captcha found in this 800x600 picture"},
        {"file": "654321_white.png", **missing, "truth": "654321",
         "error": "no captcha found in this 160x60 picture: it has no ink"}]
    gallery = tmp_path / "errors.png"
    assert main(["evaluate", str(folder), "--model", "seed-l2", "--json", "--gallery", str(gallery)]) == 0
    report = json.loads(capsys.readouterr().out)
    boxes = {e["file"]: e["box"] for e in report["errors"]}  # seed-l2 misreads gnuboard5's digits
    assert len(boxes) == 5 and boxes.pop(f"{label(src)}_page.png") == [301, 97, 320, 120]
    assert set(boxes.values()) == {None}
    assert Image.open(gallery).size[0] < 1000  # the crop read is shown, not the whole screenshot
    assert main(["evaluate", str(folder)]) == 0
    assert "  wrong: 123456_blank.png  truth 123456  no captcha found in this 800x600 picture\n" in (
        capsys.readouterr().out)
