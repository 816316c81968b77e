"""The package as a pip user gets it: a wheel and an sdist built from a clean copy of the tree.

The wheel must carry the browser page (setup.py's hook runs npm), install into a fresh venv and serve a
page that reads real captchas in Chromium; the sdist must hold what rebuilds and tests it, and give the
same wheel. Builds use this venv's setuptools (``--no-build-isolation``), so nothing is downloaded; the
fresh venv borrows this venv's numpy, Pillow and onnxruntime through a ``.pth`` line instead of
downloading them, and the wheel itself is installed with ``--no-deps``.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import sample_files

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGE = ["kcaptcha_solver/web/dist/app.js", "kcaptcha_solver/web/dist/audio.js", "kcaptcha_solver/web/dist/locate.js",
        "kcaptcha_solver/web/dist/tfjs-backend-wasm.wasm", "kcaptcha_solver/web/dist/tfjs-backend-wasm-simd.wasm",
        "kcaptcha_solver/web/strings.json", "kcaptcha_solver/voices.json"]  # fmt: skip
# What never belongs in a clean copy: VCS data, virtualenvs, npm's output, earlier builds.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
    "runs",
)

pytestmark = pytest.mark.slow


def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without PYTHONPATH, so nothing leaks in from the tree, with ``overrides``."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **overrides}


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure shows its output."""
    done = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{output}"
    return done


def clean_copy(dest: Path) -> Path:
    """The tree without build outputs; this checkout's node_modules is linked in, so npm only builds."""
    shutil.copytree(ROOT, dest, ignore=NOT_SOURCE)
    assert not (dest / "src" / "kcaptcha_solver" / "web" / "dist").exists()
    if (ROOT / "node_modules" / "esbuild").is_dir():
        (dest / "node_modules").symlink_to((ROOT / "node_modules").resolve())
    return dest


def pip_wheel(source: Path, out: Path) -> tuple[Path, str]:
    """The wheel built from ``source`` (a tree or an sdist) and the build's output."""
    done = run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-v", "-w", str(out),
                str(source)], cwd=out.parent)  # fmt: skip
    (wheel,) = out.glob("*.whl")
    return wheel, done.stdout + done.stderr


def contents(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {name: z.read(name) for name in z.namelist()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A wheel and an sdist built from a clean copy of the tree, as ``python -m build`` would."""
    tmp = tmp_path_factory.mktemp("package")
    tree = clean_copy(tmp / "tree")
    wheel, log = pip_wheel(tree, tmp / "wheel")
    sdist_dir = tmp / "sdist"
    run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(sdist_dir)!r})"],
        cwd=tree)  # fmt: skip
    (sdist,) = sdist_dir.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "tmp": tmp, "log": log}


@pytest.fixture(scope="module")
def installed(built) -> Path:
    """A fresh venv with the wheel installed (its dependencies borrowed from this venv): its bin folder."""
    venv = built["tmp"] / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=built["tmp"])
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=venv).stdout
    # Added after the venv's own site-packages, and its .pth files (this tree's editable install) stay unread.
    (Path(purelib.strip()) / "borrowed-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(built["wheel"])],
        cwd=venv)  # fmt: skip
    where = run([str(python), "-c", "import kcaptcha_solver; print(kcaptcha_solver.__file__)"], cwd=venv).stdout
    assert Path(where.strip()).is_relative_to(venv), where
    return venv / "bin"


def test_the_wheel_carries_the_page_and_the_licence(built) -> None:
    assert "running npm run build" in built["log"]  # the clean copy had no page: the hook built it
    names = contents(built["wheel"])
    missing = [n for n in [*PAGE, "kcaptcha_solver/py.typed", "kcaptcha_solver-0.1.0.dist-info/licenses/LICENSE"]
               if n not in names]  # fmt: skip
    assert not missing, missing
    metadata = names["kcaptcha_solver-0.1.0.dist-info/METADATA"].decode()
    assert "License-Expression: MIT" in metadata
    assert "project.license` as a TOML table" not in built["log"]  # the SPDX string: no deprecation warning
    assert "Provides-Extra: train" in metadata


def test_the_installed_wheel_serves_a_page_that_reads_real_captchas(installed, shared_dir, tmp_path) -> None:
    """``kcaptcha web`` from the fresh venv, in a neutral folder, read in Chromium: the real labels come back."""
    playwright = pytest.importorskip("playwright.sync_api")
    run([str(installed / "kcaptcha"), "site", "build", "site"], cwd=tmp_path)
    assert all((tmp_path / "site" / "dist" / Path(p).name).is_file() for p in PAGE if "/dist/" in p)
    server = subprocess.Popen([str(installed / "kcaptcha"), "web", "--no-open", "--port", "0"], cwd=tmp_path,
                              env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        line = server.stdout.readline()
        url = re.search(r"http://\S+/", line)
        assert url, f"kcaptcha web printed {line!r} (exit {server.poll()})"
        images = [sample_files(shared_dir / folder)[3] for folder in ("gnuboard5", "seed-l2")]
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url.group(0))
            page.wait_for_function("document.body.dataset.state === 'ready'")
            for image in images:
                page.evaluate("document.body.dataset.state = 'ready'")
                page.set_input_files("#file-input", str(image))
                page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)")
                assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#status")
                assert page.get_attribute("#result", "data-text") == image.name.split("_")[0]
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_sdist_rebuilds_the_same_wheel_and_holds_its_tests(built, tmp_path) -> None:
    with tarfile.open(built["sdist"]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    needed = ["package.json", "package-lock.json", "setup.py", "MANIFEST.in", "LICENSE", "tests/conftest.py",
              "tests/test_package.py", *(f"src/{p}" for p in PAGE)]  # fmt: skip
    assert not [n for n in needed if n not in names], sorted(names)
    wheel, log = pip_wheel(built["sdist"], tmp_path / "wheel")
    assert "running npm" not in log  # the sdist carries the built page
    again = contents(wheel)
    first = contents(built["wheel"])
    assert sorted(again) == sorted(first)
    assert [name for name in first if again[name] != first[name]] == []


def test_without_npm_the_build_fails_and_says_why(tmp_path) -> None:
    """No bundle and no npm: the wheel build stops with a clear line instead of shipping a page-less wheel."""
    tree = clean_copy(tmp_path / "tree")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "out"),
         str(tree)], cwd=tmp_path, env=clean_env(PATH=str(Path(sys.executable).parent)),  # this venv only: no npm
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "npm is not installed" in done.stdout + done.stderr
    assert not list(tmp_path.glob("out/*.whl"))
