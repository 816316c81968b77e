"""``kcaptcha generate``: naming, workers, manifest, custom configs, and one clear error per bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import sample_files

from kcaptcha_solver.cli import main
from kcaptcha_solver.fonts import DEFAULT_FONTS


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_names_follow_the_shared_sample(tmp_path: Path, shared_dir: Path) -> None:
    assert main(["generate", "--preset", "seed-l2", "--seed", "82000000", "--count", "5",
                 "--out", str(tmp_path), "--quiet"]) == 0  # fmt: skip
    want = [p.name for p in sample_files(shared_dir / "seed-l2")[:5]]
    assert [p.name for p in sample_files(tmp_path)] == want


def test_workers_give_the_same_files_and_manifest(tmp_path: Path) -> None:
    common = ["generate", "--seed", "1000", "--count", "450", "--manifest", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one == two and len(one) == 451
    rows = [json.loads(line) for line in one["manifest.jsonl"].decode().splitlines()]
    assert [r["seed"] for r in rows] == list(range(1000, 1450))
    first = rows[0]
    assert first["file"] == f"{first['label']}_000000.jpg" and first["font"] in DEFAULT_FONTS
    assert len(first["boxes"]) == 6 and all(len(b) == 4 for b in first["boxes"])


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--count", "3", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "3/3" in captured.err and "3 images" in captured.out


def test_format_override_and_custom_config(tmp_path: Path) -> None:
    config = tmp_path / "site.json"
    site = {"allowed_symbols": "abc", "length": [3, 4], "height": 50, "image_format": "jpg"}
    config.write_text(json.dumps(site))
    out = tmp_path / "out"
    assert main(["generate", "--config", str(config), "--count", "6", "--format", "png",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    names = sorted(_files(out))
    assert len(names) == 6 and all(n.endswith(".png") for n in names)
    assert all(set(n.split("_")[0]) <= set("abc") and 3 <= len(n.split("_")[0]) <= 4 for n in names)


def test_fonts_option_and_no_leftovers(
    tmp_path: Path, fonts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KCAPTCHA_FONTS", str(tmp_path / "nowhere"))
    out = tmp_path / "o"
    assert main(["generate", "--count", "4", "--fonts", str(fonts_dir), "--out", str(out), "--quiet"]) == 0
    assert len(list(out.iterdir())) == 4, "no temp files remain"


def _corrupt_fonts(tmp_path: Path, fonts_dir: Path) -> Path:
    folder = tmp_path / "corrupt"
    shutil.copytree(fonts_dir, folder)
    (folder / DEFAULT_FONTS[1]).write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return folder


BAD = {
    "unknown preset": (["--preset", "gnuboard"], "Did you mean 'gnuboard5'"),
    "negative seed": (["--seed", "-1"], "0..4294967295"),
    "huge seed": (["--seed", "4294967295", "--count", "2"], "0..4294967295"),
    "zero count": (["--count", "0"], "count"),
    "negative count": (["--count", "-3"], "count"),
    "zero workers": (["--workers", "0"], "workers"),
    "missing fonts": (["--fonts", "{tmp}/nowhere"], "kcaptcha fonts download"),
    "corrupt font": (["--fonts", "{corrupt}"], "not a readable PNG"),
    "unwritable out": (["--out", "{tmp}/file/sub"], "cannot write to output folder"),
    "bad config field": (["--config", "{tmp}/bad.json"], "Did you mean 'width'"),
    "unreadable config": (["--config", "{tmp}/none.json"], "cannot read configuration"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_error_line(
    case: str, tmp_path: Path, fonts_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "bad.json").write_text(json.dumps({"widht": 100}))
    corrupt = _corrupt_fonts(tmp_path, fonts_dir) if case == "corrupt font" else None
    extra, message = BAD[case]
    extra = [a.format(tmp=tmp_path, corrupt=corrupt) for a in extra]
    out = tmp_path / "out"
    code = main(["generate", "--count", "2", "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not out.exists() or not any(out.iterdir()), "nothing was written"


@pytest.mark.parametrize("fonts", ["present", "missing"])
def test_without_numba_every_missing_piece_is_named_before_anything_starts(
    fonts: str, tmp_path: Path, fonts_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """As after ``pip install kcaptcha-solver`` alone: numba (and the fonts, if absent) in one line, no bar."""
    monkeypatch.setitem(sys.modules, "numba", None)  # None in sys.modules: numba is not installed
    folder = fonts_dir if fonts == "present" else tmp_path / "nowhere"
    out = tmp_path / "out"
    assert main(["generate", "--count", "2", "--fonts", str(folder), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: drawing captchas needs numba: pip install 'kcaptcha-solver[generate]'")
    assert err.count("\n") == 1 and "img/s" not in err  # one line, and no progress bar before it
    assert ("kcaptcha fonts download" in err) == (fonts == "missing")
    assert not out.exists()
