"""What ``pip install kcaptcha-solver`` and each extra download and put on disk, in fresh venvs.

For each target (the core, then ``[serve]``, ``[generate]``, ``[train]``), pip downloads the wheel's
requirements into an empty folder (download = the sum of those files, our own wheel excepted), installs
them from there into a new venv, and the venv's site-packages is measured against a bare venv's
(installed = what the target added on disk). ``[train]`` is measured as the README advises: the CPU build
of torch (``--torch``) first, so pip does not pull the CUDA build.

    python -m pip wheel --no-deps -w /tmp/w . && python benchmarks/install_size.py /tmp/w/kcaptcha_solver-*.whl

Writes benchmarks/results/install.json. Sizes depend on the platform and the day's releases; the file
records both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"core": "", "serve": "[serve]", "generate": "[generate]", "train": "[train]"}


def pip(python: Path, *args: str) -> None:
    done = subprocess.run([str(python), "-m", "pip", "-q", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"pip {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages")
    return found


def measure(wheel: Path, extra: str, torch: str | None, work: Path, bare: int) -> dict:
    downloads, venv = work / "dl", work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    wanted = [*([torch] if torch else []), f"{wheel}{extra}"]
    pip(python, "download", "-d", str(downloads), *wanted)
    files = sorted(p for p in downloads.iterdir() if p.name != wheel.name)
    pip(python, "install", "--no-index", "--find-links", str(downloads), *wanted)
    return {
        "packages": [p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in files],
        "download_bytes": sum(p.stat().st_size for p in files),
        "installed_bytes": tree_bytes(site_packages(venv)) - bare,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="the kcaptcha_solver wheel to measure")
    parser.add_argument("--torch", default="torch==2.13.0", help="torch requirement installed before [train] "
                        "(the CPU build: this machine's pip finds it in /opt/wheels; elsewhere add "
                        "--index-url https://download.pytorch.org/whl/cpu to pip)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "install.json")
    args = parser.parse_args()
    wheel = args.wheel.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "venv", f"{tmp}/bare"], check=True)
        bare = tree_bytes(site_packages(Path(tmp, "bare")))
        results = {}
        for name, extra in TARGETS.items():
            work = Path(tmp, name)
            results[name] = measure(wheel, extra, args.torch if name == "train" else None, work, bare)
            row = results[name]
            print(f"{name:9} download {row['download_bytes'] / 1e6:7.1f} MB   installed "
                  f"{row['installed_bytes'] / 1e6:7.1f} MB   {len(row['packages'])} packages", flush=True)
    report = {
        "wheel": wheel.name,
        "wheel_bytes": wheel.stat().st_size,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": args.torch,
        "pip_index": os.environ.get("PIP_INDEX_URL", "default"),
        "targets": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
