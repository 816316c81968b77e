"""Build hook: every wheel and sdist carries the browser page's bundle (web/dist).

The bundle is made by npm from package-lock.json and never committed. Without this hook, what went
into a wheel depended on whether someone had run ``npm run build`` first; now building the package
runs ``npm ci`` (when node_modules lacks esbuild) and ``npm run build`` whenever web/dist is missing or
older than its sources, and fails with one clear message when npm is not installed. An sdist carries the
built page, so a wheel built from it needs no npm and is the same wheel.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import ExecError

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "src" / "kcaptcha_solver" / "web"
BUILT = [WEB / "dist" / name  # web/site.py's BUILT: what the page loads
         for name in ("app.js", "audio.js", "locate.js", "tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm")]


def page_sources() -> list[Path]:
    """What the bundle is made from: a newer one means web/dist is stale."""
    return [*WEB.glob("*.js"), WEB / "build.mjs", *WEB.glob("runtime/*.js"), ROOT / "package.json",
            ROOT / "package-lock.json"]  # fmt: skip


def page_is_current() -> bool:
    if not all(p.is_file() for p in BUILT):
        return False
    return max(p.stat().st_mtime for p in page_sources()) <= min(p.stat().st_mtime for p in BUILT)


class BuildPage(Command):
    """``npm ci && npm run build`` when web/dist is missing or stale (return codes checked)."""

    description = "build the browser page's bundle (web/dist) with npm"
    user_options: list = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        if page_is_current():
            return
        if shutil.which("npm") is None:
            raise ExecError(
                "the browser page (src/kcaptcha_solver/web/dist) must be built into the package, and npm is "
                "not installed: install Node.js 18+ with npm, then build again"
            )
        commands = [["npm", "run", "build"]]
        if not (ROOT / "node_modules" / "esbuild").is_dir():
            commands.insert(0, ["npm", "ci", "--no-audit", "--no-fund"])
        for cmd in commands:
            print(f"running {' '.join(cmd)}", flush=True)  # a user building the package sees npm at work
            if subprocess.run(cmd, cwd=ROOT).returncode != 0:
                raise ExecError(f"{' '.join(cmd)} failed (see its output above); the package was not built")
        if not page_is_current():
            raise ExecError(f"npm run build did not write {', '.join(p.name for p in BUILT)} into {BUILT[0].parent}")


class BuildPyWithPage(build_py):
    def run(self) -> None:
        self.run_command("build_page")
        super().run()


class SdistWithPage(sdist):
    def run(self) -> None:
        self.run_command("build_page")
        super().run()


setup(cmdclass={"build_page": BuildPage, "build_py": BuildPyWithPage, "sdist": SdistWithPage})
