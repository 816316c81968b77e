"""Gnuboard's spoken captcha: exact reads of the real files, a learned voice set, and every bad input.

The real files in ../shared/real-kcaptcha/audio were made as kcaptcha_mp3.php makes them; the clips
in mp3/ are read in place. Learned sets live in tmp_path through $KCAPTCHA_DATA.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sample_files

from kcaptcha_solver import audio
from kcaptcha_solver.cli import main
from kcaptcha_solver.errors import AudioError, ConfigError, KcaptchaError

ROOT = Path(__file__).resolve().parents[1]
VOICES = ("basic", "jmoon")


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty user data folder, so no learned set leaks between tests."""
    monkeypatch.setenv(audio.DATA_ENV, str(tmp_path / "data"))
    return tmp_path / "data"


def clips(shared_dir: Path, voice: str) -> dict[str, bytes]:
    return {d: (shared_dir / "mp3" / voice / f"{d}.mp3").read_bytes() for d in audio.DIGITS}


def speak(voice_clips: dict[str, bytes], text: str) -> bytes:
    """What kcaptcha_mp3.php writes: the digits' clips end to end."""
    return b"".join(voice_clips[d] for d in text)


def id3(title: str) -> bytes:
    """A small ID3v2.3 tag with a TIT2 frame: our way to make new clips out of existing audio."""
    frame = b"TIT2" + (len(title) + 1).to_bytes(4, "big") + b"\0\0" + b"\0" + title.encode()
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame


@pytest.fixture()
def own_voice(shared_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A voice of our own: the jmoon clips under shuffled digit names, each re-tagged with its new digit."""
    order = list(audio.DIGITS)
    random.Random(14).shuffle(order)
    source = clips(shared_dir, "jmoon")
    folder = tmp_path / "site-voice"
    folder.mkdir()
    made = {}
    for new, old in zip(audio.DIGITS, order, strict=True):
        made[new] = id3(f"digit {new}") + source[old]
        (folder / f"{new}.mp3").write_bytes(made[new])
    return folder, made


# -- the real files ----------------------------------------------------------------


@pytest.mark.parametrize("voice", VOICES)
def test_real_files_read_exactly(shared_dir: Path, voice: str) -> None:
    files = sample_files(shared_dir / "audio" / voice)
    assert len(files) == 20
    got = [tuple(audio.read(f.read_bytes())) for f in files]
    assert got == [(f.stem.split("_")[0], voice) for f in files]


def test_shipped_sizes_are_the_clips_sizes() -> None:
    """As the shared README gives them: every basic clip is 13,259 bytes, jmoon's 8,340 to 10,842."""
    assert {n: v.sizes for n, v in audio.shipped_voices().items()} == {"basic": (13259, 13259), "jmoon": (8340, 10842)}


def test_facts_tool_rewrites_the_shipped_file(shared_dir: Path, tmp_path: Path) -> None:
    """tools/voice_facts.py, run on the clips, writes voices.json byte for byte."""
    out = tmp_path / "voices.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "voice_facts.py"), str(shared_dir / "mp3"),
                           "--out", str(out)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == audio.SHIPPED_FILE.read_bytes()


def test_looks_like_mp3(shared_dir: Path) -> None:
    assert all(audio.looks_like_mp3(f.read_bytes()[:4]) for f in (shared_dir / "audio").glob("*/*.mp3"))
    assert audio.looks_like_mp3(b"\xff\xfb\x90\x64")  # MPEG-1 layer III frame header (the jmoon clips)
    image = next((shared_dir / "gnuboard5").iterdir()).read_bytes()
    for data in (image, b"", b"I", b"\xff\xd8\xff\xe0", b"\xff\xe9", b"\x89PNG"):  # image, empty, JPEG, bad layer
        assert not audio.looks_like_mp3(data)


# -- bad input: each says where it stopped, never a guess -----------------------------


def error(data: bytes, sets: dict | None = None) -> AudioError:
    with pytest.raises(AudioError) as info:
        audio.read(data, sets)
    assert isinstance(info.value, KcaptchaError) and isinstance(info.value, ValueError)
    return info.value


def test_empty() -> None:
    exc = error(b"")
    assert (exc.offset, exc.digits, exc.voice) == (0, "", None)
    assert "empty" in str(exc)


@pytest.mark.parametrize("cut", [1, 100, 11000])
def test_truncated_download(shared_dir: Path, cut: int) -> None:
    data = speak(clips(shared_dir, "basic"), "902718")
    exc = error(data[:-cut])
    assert (exc.offset, exc.digits, exc.voice) == (5 * 13259, "90271", "basic")
    assert f"voice 'basic' read 90271 (bytes 0-66,294), then at byte 66,295: the file ends {cut:,} bytes" in str(exc)
    assert "truncated" in str(exc)


def test_truncated_inside_the_probe(shared_dir: Path) -> None:
    """Cut before the bytes that name the clip: no clip can be named, the error says too few bytes."""
    data = speak(clips(shared_dir, "basic"), "4411")[:3 * 13259 + 1000]
    exc = error(data)
    assert (exc.offset, exc.digits, exc.voice) == (3 * 13259, "441", "basic")
    assert "the last 1,000 bytes are too few for any of its clips (13,259 bytes or more)" in str(exc)


def test_unknown_voice(own_voice: tuple[Path, dict[str, bytes]]) -> None:
    exc = error(speak(own_voice[1], "123456"))
    assert (exc.offset, exc.digits, exc.voice) == (0, "", None)
    assert "does not start with a clip of any known voice set (basic, jmoon)" in str(exc)
    assert "kcaptcha voices add DIR --name NAME" in str(exc)


def test_altered_clip(shared_dir: Path) -> None:
    """One byte changed inside the third clip (as a re-encode would change many)."""
    voice = clips(shared_dir, "jmoon")
    data = bytearray(speak(voice, "385012"))
    start = len(voice["3"]) + len(voice["8"])
    data[start + 4000] ^= 0x01
    exc = error(bytes(data))
    assert (exc.offset, exc.digits, exc.voice) == (start, "38", "jmoon")
    assert "start like clip 5 but differ from it" in str(exc)


@pytest.mark.parametrize("kind", ["garbage", "reencoded-header"])
def test_not_gnuboard_audio(kind: str) -> None:
    rng = random.Random(kind)
    data = bytes(rng.randrange(256) for _ in range(40_000))
    if kind == "reencoded-header":  # an mp3 of other audio: right kind of file, no known clip
        data = b"\xff\xfb\x90\x64" + data[4:]
    exc = error(data)
    assert (exc.offset, exc.voice) == (0, None)
    assert ("an mp3)" if kind != "garbage" else "not an mp3") in str(exc)


def test_two_voices_in_one_file(shared_dir: Path) -> None:
    data = speak(clips(shared_dir, "basic"), "507") + speak(clips(shared_dir, "jmoon"), "913")
    exc = error(data)
    assert (exc.offset, exc.digits, exc.voice) == (3 * 13259, "507", "basic")
    assert "clip 9 of voice 'jmoon': the file mixes two voice sets" in str(exc)


def test_mp3_that_is_not_a_concatenation(shared_dir: Path) -> None:
    """A valid-looking MPEG frame between two clips: still an mp3, no longer Gnuboard's."""
    voice = clips(shared_dir, "jmoon")
    frame = b"\xff\xfb\x90\x64" + bytes(413)
    data = speak(voice, "27") + frame + speak(voice, "7401")
    exc = error(data)
    assert (exc.offset, exc.digits, exc.voice) == (len(voice["2"]) + len(voice["7"]), "27", "jmoon")
    assert "no clip of this set starts there" in str(exc) and "kcaptcha voices add" in str(exc)


def test_two_sets_that_both_explain_a_file_is_an_error(shared_dir: Path) -> None:
    jmoon = audio.shipped_voices()["jmoon"]
    twin = audio.VoiceSet("twin", jmoon.probe_at, jmoon.clips, "test")
    exc = error(speak(clips(shared_dir, "jmoon"), "55"), {"jmoon": jmoon, "twin": twin})
    assert "more than one voice set ('jmoon' reads 55, 'twin' reads 55)" in str(exc)


# -- a site's own voice ------------------------------------------------------------------


def test_learned_voice_reads_its_digits(shared_dir: Path, own_voice: tuple[Path, dict[str, bytes]],
                                        _data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    folder, made = own_voice
    assert main(["voices", "add", str(folder), "--name", "mysite"]) == 0
    assert "learned voice 'mysite'" in capsys.readouterr().out
    assert [p.name for p in (_data_dir / "voices").iterdir()] == ["mysite.json"]  # facts only, no audio
    assert audio.read(speak(made, "907153")) == ("907153", "mysite")
    real = sample_files(shared_dir / "audio" / "jmoon")[0]
    assert audio.read(real.read_bytes()) == (real.stem.split("_")[0], "jmoon")  # shipped sets still match

    assert main(["voices", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == ["basic", "jmoon", "mysite"]
    assert listed[2]["origin"] == str(_data_dir / "voices" / "mysite.json")

    assert main(["voices", "remove", "mysite"]) == 0
    assert error(speak(made, "907153")).offset == 0


def test_learning_refuses_bad_folders(shared_dir: Path, own_voice: tuple[Path, dict[str, bytes]],
                                      tmp_path: Path, _data_dir: Path) -> None:
    folder, _ = own_voice
    for name in ("basic", "../up", ""):
        with pytest.raises(ConfigError):
            audio.add_voice(folder, name)
    with pytest.raises(ConfigError, match="are voice 'jmoon' already"):  # same clips, other names: ambiguous
        shuffled = tmp_path / "shuffled"
        shuffled.mkdir()
        for d in audio.DIGITS:
            shutil.copy(shared_dir / "mp3" / "jmoon" / f"{d}.mp3", shuffled / f"{(int(d) + 3) % 10}.mp3")
        audio.add_voice(shuffled, "shuffled")
    (folder / "7.mp3").unlink()
    with pytest.raises(AudioError, match="lacks 7.mp3"):
        audio.add_voice(folder, "mysite")
    shutil.copy(folder / "1.mp3", folder / "7.mp3")
    with pytest.raises(AudioError, match="clips of 1 and 7 are the same file"):
        audio.add_voice(folder, "mysite")
    with pytest.raises(AudioError, match="not found"):
        audio.add_voice(tmp_path / "nowhere", "mysite")
    assert not _data_dir.exists()  # nothing half-written


@pytest.mark.parametrize("content", ["{not json", '{"format": 99}', '{"format": 1, "probe_at": 0}'])
def test_damaged_store_is_an_error_not_a_skip(content: str, _data_dir: Path, shared_dir: Path) -> None:
    (_data_dir / "voices").mkdir(parents=True)
    (_data_dir / "voices" / "broken.json").write_text(content)
    with pytest.raises(AudioError, match="broken.*add the set again"):
        audio.read(speak(clips(shared_dir, "basic"), "12"))


def test_cli_errors(own_voice: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture) -> None:
    folder, _ = own_voice
    assert main(["voices", "add", str(folder), "--name", "mysite"]) == 0
    assert main(["voices", "add", str(folder), "--name", "mysite"]) == 2
    assert "already learned" in capsys.readouterr().err
    assert main(["voices", "remove", "mysit"]) == 2
    assert "did you mean 'mysite'?" in capsys.readouterr().err
    assert main(["voices", "remove", "jmoon"]) == 2
    assert main(["voices", "add", str(folder.parent / "nowhere"), "--name", "other"]) == 1
    assert "error: voice folder not found" in capsys.readouterr().err
    assert main(["voices"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "basic                     13,259  shipped",
        "jmoon               8,340-10,842  shipped",
        f"mysite              8,368-10,870  {audio.voices_dir() / 'mysite.json'}",
    ]


def test_user_folder_without_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $KCAPTCHA_DATA learned sets go to the platform's user data folder (XDG on Linux)."""
    pytest.importorskip("platformdirs")  # a core dependency; only a bare development venv may lack it
    monkeypatch.delenv(audio.DATA_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    audio._voices_dir.cache_clear()
    try:
        assert audio.voices_dir() == tmp_path / "xdg" / "kcaptcha-solver" / "voices"
    finally:
        audio._voices_dir.cache_clear()
