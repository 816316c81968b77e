"""Regenerate the package's voice facts from a folder of Gnuboard voice clips.

    python tools/voice_facts.py ../shared/real-kcaptcha/mp3

MP3_DIR holds one folder per voice set (Gnuboard's ``plugin/kcaptcha/mp3/``: ``basic/``, ``jmoon/``),
each with ``0.mp3 … 9.mp3``. Only sizes, sha256 and probe bytes are written
(src/kcaptcha_solver/voices.json); the clips are read in place and never copied.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kcaptcha_solver.audio import FORMAT, SHIPPED_FILE, VoiceSet


def facts(mp3_dir: Path) -> dict:
    """The voices.json document for every set folder in ``mp3_dir``, by name."""
    folders = sorted(p for p in mp3_dir.iterdir() if p.is_dir())
    if not folders:
        raise SystemExit(f"no voice set folders in {mp3_dir}")
    return {"format": FORMAT, "voices": {f.name: VoiceSet.from_folder(f, f.name).to_dict() for f in folders}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mp3_dir", type=Path, metavar="MP3_DIR")
    parser.add_argument("--out", type=Path, default=SHIPPED_FILE)
    args = parser.parse_args()
    args.out.write_text(json.dumps(facts(args.mp3_dir), indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
