"""The page's spoken-captcha reader (web/audio.js) in Node: the same answers and errors as audio.py.

audio.js is a pure ES module (no DOM, no npm package), so Node runs it as the browser would, over the
package's voices.json. Every input, good or bad, must give exactly what the Python reader gives:
the digits and voice, or the same error message, offset, digits and voice.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from kcaptcha_solver import audio
from kcaptcha_solver.errors import AudioError

ROOT = Path(__file__).resolve().parents[1]

# argv: voices.json, then files; prints one JSON line per file: the answer or the error's fields.
READ_JS = """
import * as fs from 'node:fs';
import { AudioError, readAudio } from './src/kcaptcha_solver/web/audio.js';
const [factsFile, ...files] = process.argv.slice(1);
const facts = JSON.parse(fs.readFileSync(factsFile, 'utf8'));
for (const file of files) {
  const bytes = new Uint8Array(fs.readFileSync(file));
  try {
    console.log(JSON.stringify(readAudio(bytes, facts)));
  } catch (e) {
    if (!(e instanceof AudioError)) throw e;
    console.log(JSON.stringify({ error: e.message, offset: e.offset, digits: e.digits, voice: e.voice }));
  }
}
"""

# argv: files; prints each file's sha256 from the page's own implementation.
SHA_JS = """
import * as fs from 'node:fs';
import { sha256 } from './src/kcaptcha_solver/web/audio.js';
for (const file of process.argv.slice(1)) console.log(sha256(new Uint8Array(fs.readFileSync(file))));
"""


def node(script: str, *args: str) -> list[str]:
    if shutil.which("node") is None:
        pytest.fail("node is needed (Node 20+): the page's audio reader is tested in Node")
    done = subprocess.run(["node", "--input-type=module", "-e", script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"node failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout.splitlines()


def python_answer(data: bytes) -> dict:
    try:
        return audio.read(data, audio.shipped_voices())._asdict()
    except AudioError as exc:
        return {"error": str(exc), "offset": exc.offset, "digits": exc.digits, "voice": exc.voice}


def bad_inputs(shared_dir: Path) -> dict[str, bytes]:
    """One file per bad case of test_audio.py, made from the shared clips."""
    basic = {d: (shared_dir / "mp3" / "basic" / f"{d}.mp3").read_bytes() for d in audio.DIGITS}
    jmoon = {d: (shared_dir / "mp3" / "jmoon" / f"{d}.mp3").read_bytes() for d in audio.DIGITS}
    full = b"".join(basic[d] for d in "902718")
    altered = bytearray(b"".join(jmoon[d] for d in "385012"))
    altered[len(jmoon["3"]) + len(jmoon["8"]) + 4000] ^= 1
    garbage = bytes(random.Random(14).randrange(256) for _ in range(20_000))
    return {
        "empty": b"",
        "two-bytes": b"ab",
        "truncated": full[:-100],
        "truncated-in-probe": full[:3 * 13259 + 1000],
        "altered": bytes(altered),
        "garbage": garbage,
        "other-mp3": b"\xff\xfb\x90\x64" + garbage[4:],
        "two-voices": full[:3 * 13259] + b"".join(jmoon[d] for d in "913"),
        "not-a-concatenation": jmoon["2"] + jmoon["7"] + b"\xff\xfb\x90\x64" + bytes(413) + jmoon["7"],
    }


def test_page_reads_like_python(shared_dir: Path, tmp_path: Path) -> None:
    files = sorted((shared_dir / "audio").glob("*/*.mp3"))
    for name, data in bad_inputs(shared_dir).items():
        files.append(tmp_path / f"{name}.mp3")
        files[-1].write_bytes(data)
    got = [json.loads(line) for line in node(READ_JS, str(audio.SHIPPED_FILE), *map(str, files))]
    want = [python_answer(f.read_bytes()) for f in files]
    assert got == want
    real = [g for g, f in zip(got, files, strict=True) if f.parent.parent.name == "audio"]
    assert len(real) == 40 and all(g.get("text") for g in real)  # the 40 real files are answered, not errors
    assert sum("error" in g for g in got) == 9


def test_page_sha256_is_sha256(tmp_path: Path) -> None:
    """Lengths around the padding boundaries (55, 56, 64 ...) and a clip-sized one."""
    rng = random.Random(256)
    files = []
    for size in (0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 13259):
        files.append(tmp_path / f"{size}.bin")
        files[-1].write_bytes(bytes(rng.randrange(256) for _ in range(size)))
    assert node(SHA_JS, *map(str, files)) == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
