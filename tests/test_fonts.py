"""Font atlases: pinned download (against a local server or a fake fetch), building from a TrueType font, loading."""

from __future__ import annotations

import functools
import glob
import hashlib
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from kcaptcha_solver import fonts
from kcaptcha_solver.cli import main
from kcaptcha_solver.errors import FontsError
from kcaptcha_solver.fonts import DEFAULT_FONTS, FONT_SETS, FONT_SHA256, FONTS_1_2, load_atlas
from kcaptcha_solver.generator import ALPHABET, CaptchaConfig, Generator

# CI needs a TrueType font: Debian/Ubuntu package fonts-dejavu-core.
TTF_CANDIDATES = ["/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf", "/usr/share/fonts/**/*.ttf"]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[callable]:
    """``serve(folder)`` -> base URL of a threaded HTTP server on 127.0.0.1 for that folder."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _shared_atlas(shared_dir: Path, name: str) -> Path:
    """Where the shared sample keeps an atlas: the 2.x ones in fonts/, the 1.2.x ones in fonts-1.2/."""
    return shared_dir / ("fonts-1.2" if name in FONTS_1_2 else "fonts") / name


@pytest.fixture
def font_copy(tmp_path: Path, shared_dir: Path) -> Path:
    """All 25 shared atlases copied into one temp folder, to be served (and maybe spoiled)."""
    folder = tmp_path / "served"
    folder.mkdir()
    for name in FONT_SHA256:
        shutil.copy(_shared_atlas(shared_dir, name), folder / name)
    return folder


def test_pinned_hashes_match_the_shared_atlases(shared_dir: Path) -> None:
    assert len(FONT_SHA256) == 25 and len(FONTS_1_2) == 22 and set(DEFAULT_FONTS) < set(FONT_SHA256)
    for name, want in FONT_SHA256.items():
        assert hashlib.sha256(_shared_atlas(shared_dir, name).read_bytes()).hexdigest() == want


def test_download(serve, font_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "fonts"
    assert main(["fonts", "download", "--dest", str(dest), "--base-url", serve(font_copy)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted([*FONT_SHA256, "NOTICE.txt"])
    for name in FONT_SHA256:
        assert (dest / name).read_bytes() == (font_copy / name).read_bytes()
    assert "KCAPTCHA, Copyright by Kruglov Sergei, www.captcha.ru" in (dest / "NOTICE.txt").read_text()
    assert "Copyright by Kruglov Sergei" in capsys.readouterr().out
    Generator("gnuboard5", fonts_dir=str(dest)).draw(1)
    Generator(CaptchaConfig(fonts=FONTS_1_2), fonts_dir=str(dest)).draw(1)


def test_download_fetches_each_set_from_its_pinned_commit(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network: a fake fetch answers the pinned URLs from the shared folders, and only those."""
    monkeypatch.delenv("KCAPTCHA_FONTS_URL", raising=False)
    pinned = {f"{s.url}/{name}": name for s in FONT_SETS for name in s.sha256}
    asked = []

    def fake_fetch(url: str, timeout: float) -> bytes:
        asked.append(url)
        return _shared_atlas(shared_dir, pinned[url]).read_bytes()

    monkeypatch.setattr(fonts, "_fetch", fake_fetch)
    dest = fonts.download_fonts(tmp_path / "f")
    assert sorted(asked) == sorted(pinned)
    assert {u.split("/")[5] for u in asked} == {  # owner/repo/commit: two commits, one per set
        "0b6f081f765ac1af204d53c6a2b17a1b25a71502", "34c633ebb9848cb6a8afc9964b34703a2f59b2d6"
    }  # fmt: skip
    assert all(fonts.fonts_present(dest).values())


def test_download_url_from_environment(
    serve, font_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KCAPTCHA_FONTS_URL", serve(font_copy) + "/")
    assert main(["fonts", "download", "--dest", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / DEFAULT_FONTS[0]).is_file()


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and match in err, err


@pytest.mark.parametrize("name", [DEFAULT_FONTS[2], FONTS_1_2[-1]])
def test_corrupt_atlas_is_refused(serve, font_copy: Path, tmp_path: Path, capsys, name: str) -> None:
    spoiled = font_copy / name
    spoiled.write_bytes(spoiled.read_bytes()[:-1] + b"\0")  # the last of a set: others were fine
    dest = tmp_path / "fonts"
    _refused(["fonts", "download", "--dest", str(dest), "--base-url", serve(font_copy)], capsys, "sha256")
    assert not dest.exists()


def test_missing_file_and_existing_folder_left_alone(serve, font_copy: Path, tmp_path: Path, capsys) -> None:
    (font_copy / DEFAULT_FONTS[1]).unlink()
    dest = tmp_path / "fonts"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    _refused(["fonts", "download", "--dest", str(dest), "--base-url", serve(font_copy)], capsys, "404")
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


def test_unreachable_server_and_unwritable_dest(serve, font_copy: Path, tmp_path: Path, capsys) -> None:
    _refused(["fonts", "download", "--dest", str(tmp_path / "a"), "--base-url", "http://127.0.0.1:9"],
             capsys, "could not download")  # fmt: skip
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _refused(["fonts", "download", "--dest", str(blocker / "x"), "--base-url", serve(font_copy)],
             capsys, "could not write")  # fmt: skip
    assert blocker.read_text() == "not a folder"


def test_fonts_path(font_copy: Path, fonts_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fonts", "path", "--fonts", str(font_copy)]) == 0
    out = capsys.readouterr().out
    assert str(font_copy) in out and "missing" not in out and "warnock.png: present" in out
    assert main(["fonts", "path", "--fonts", str(fonts_dir)]) == 1  # the three 2.x atlases only
    out = capsys.readouterr().out
    assert "times_bold.png: present" in out and "antiqua.png: missing" in out


def _find_ttf() -> str:
    for pattern in TTF_CANDIDATES:
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            return found[0]
    pytest.fail("no TrueType font on this machine; install the fonts-dejavu-core package")


def test_build_atlas_and_draw_with_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    atlas_path = tmp_path / "that.png"
    assert main(["fonts", "build", _find_ttf(), "--out", str(atlas_path)]) == 0
    assert "36 glyphs" in capsys.readouterr().out
    atlas = load_atlas(atlas_path, ALPHABET)
    assert atlas.height == 69 and len(atlas.glyphs) == 36
    assert all(0 < g.width < 60 for g in atlas.glyphs.values())
    config = CaptchaConfig(fonts=("that.png",))
    gen = Generator(config, fonts_dir=str(tmp_path))
    sample = gen.draw(81000000, boxes=True)
    assert sample.font == "that.png" and len(sample.label) == 6
    assert (sample.raster < 128).any(), "glyphs were drawn"
    assert all(x1 > x0 for x0, _, x1, _ in sample.boxes)


def test_build_with_size_and_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    widths = {}
    for size in (30, 60):
        out = tmp_path / f"{size}.png"
        assert main(["fonts", "build", _find_ttf(), "--out", str(out), "--size", str(size)]) == 0
        widths[size] = load_atlas(out, ALPHABET).glyphs["0"].width
    assert 1.6 < widths[60] / widths[30] < 2.4
    not_a_font = tmp_path / "x.ttf"
    not_a_font.write_bytes(b"definitely not a font")
    _refused(["fonts", "build", str(not_a_font), "--out", str(tmp_path / "y.png")], capsys, "not a usable")
    assert not (tmp_path / "y.png").exists()
    too_small = ["fonts", "build", _find_ttf(), "--out", str(tmp_path / "z.png"), "--size", "2"]
    _refused(too_small, capsys, "--size")


def test_load_atlas_errors(tmp_path: Path) -> None:
    with pytest.raises(FontsError, match="not found"):
        load_atlas(tmp_path / "none.png", ALPHABET)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(FontsError, match="not a readable PNG"):
        load_atlas(bad, ALPHABET)
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.zeros((70, 100, 4), np.uint8), "RGBA").save(blank)
    with pytest.raises(FontsError, match="not a KCAPTCHA font atlas"):
        load_atlas(blank, ALPHABET)


def test_load_a_1_2_atlas(shared_dir: Path) -> None:
    """The 1.2.x atlases are 50 px high: 49 glyph rows, all 36 glyphs marked."""
    atlas = load_atlas(shared_dir / "fonts-1.2" / "antiqua.png", ALPHABET)
    assert atlas.height == 49 and len(atlas.glyphs) == 36
    assert all(5 <= g.width <= 32 for g in atlas.glyphs.values())

