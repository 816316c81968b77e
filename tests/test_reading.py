"""One spec for resampling, routing and reading, run in both languages: inputs.fit and solver.py's
route()/read() in Python, web/reading.js in Node, each checked against tests/fixtures/reading.json."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kcaptcha_solver.inputs import fit, inked
from kcaptcha_solver.solver import ModelInfo, general_doubts, likeliest, prefer_general, read, route, unmended

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "reading.json"
SPEC = json.loads(FIXTURE.read_text())

# Runs reading.js on every case of the fixture; prints {"read": [...], "route": [...]} as the Python side gets it.
NODE_JS = """
import * as fs from 'node:fs';
import {
  fit, generalDoubts, inked, likeliest, preferGeneral, read, route,
} from './src/kcaptcha_solver/web/reading.js';
import { coded, picture } from './tests/fixtures/picture.mjs';
const spec = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'));
const out = { read: [], route: [], fit: [], prefer: [], doubt: [], likeliest: [], inked: [] };
for (const c of spec.read) {
  const { text, chars, score, sure, unmended } = read(Float32Array.from(c.probs.flat()), c.probs.length,
                                                       spec.models[c.model]);
  out.read.push({ text, confidence: chars.map((x) => x.prob),
                  alternatives: chars.map((x) => x.alternatives.map((a) => [a.ch, a.prob])), score, sure, unmended });
}
for (const c of spec.route) {
  const { width, height } = c.image;
  out.route.push(route(c.models.map((n) => spec.models[n]), width, height, picture(c.image)).entry.name);
}
for (const c of spec.prefer) {
  const [probs, steps, general] = [Float32Array.from(c.probs.flat()), c.probs.length, spec.models[c.model]];
  out.prefer.push(preferGeneral(c.first, read(probs, steps, general), probs, steps, general));
  out.doubt.push(generalDoubts(c.first, read(probs, steps, general), probs, steps, general,
                               spec.models[c.specialist ?? 'pos']));
}
for (const c of spec.fit) {
  const [[W, H], [w, h]] = [c.from, c.to];
  const rgb = fit(coded(W, H), W, H, w, h, c.shift);
  out.fit.push({ columns: Array.from({ length: w }, (_, x) => rgb[3 * x] + 256 * rgb[3 * x + 2]),
                 rows: Array.from({ length: h }, (_, y) => rgb[3 * y * w + 1]) });
}
for (const c of spec.likeliest) {
  const entry = spec.models[c.model];
  const readings = c.readings.map((p) => {
    const probs = Float32Array.from(p.flat());
    return { probs, steps: p.length, answer: read(probs, p.length, entry) };
  });
  out.likeliest.push(readings.indexOf(likeliest(readings, entry)));
}
for (const c of spec.inked) out.inked.push(inked(picture(c.image), c.image.width, c.image.height));
console.log(JSON.stringify(out));
"""


def info(name: str) -> ModelInfo:
    return ModelInfo.from_meta({"preset": "custom", "arch": "fixture", **SPEC["models"][name]}, Path(f"{name}.onnx"))


def picture(image: dict) -> np.ndarray:
    """White, with black in rows h/3..2h/3 of the columns ink[0]..ink[1]: the same in picture.mjs."""
    pixels = np.full((image["height"], image["width"], 3), 255, np.uint8)
    if image["ink"]:
        h = image["height"]
        pixels[h // 3 : 2 * h // 3, image["ink"][0] : image["ink"][1] + 1] = 0
    return pixels


def coded(width: int, height: int) -> np.ndarray:
    """Each pixel names its place: red + 256 * blue is the column, green the row (as in picture.mjs)."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    return np.dstack([x % 256, y, x // 256]).astype(np.uint8)


def expected(case: dict) -> dict:
    """The case's reading; unmended (the best path's own string) is the text unless the case says otherwise."""
    return {**{key: case[key] for key in ("text", "confidence", "alternatives", "score", "sure")},
            "unmended": case.get("unmended", case["text"])}


@pytest.mark.parametrize("case", SPEC["read"], ids=[c["about"] for c in SPEC["read"]])
def test_python_reads_as_the_spec_says(case: dict) -> None:
    probs = np.asarray(case["probs"], np.float32)
    result = read(probs, info(case["model"]))
    got = {"text": result.text, "confidence": list(result.confidence),
           "alternatives": [[list(a) for a in alts] for alts in result.alternatives],
           "score": result.score, "sure": result.sure, "unmended": unmended(probs, info(case["model"]))}
    assert got == expected(case)


@pytest.mark.parametrize("case", SPEC["route"], ids=[c["about"] for c in SPEC["route"]])
def test_python_routes_as_the_spec_says(case: dict) -> None:
    assert route([info(n) for n in case["models"]], picture(case["image"])).name == case["model"]


@pytest.mark.parametrize("case", SPEC["fit"], ids=[c["about"] for c in SPEC["fit"]])
def test_python_resamples_as_the_spec_says(case: dict) -> None:
    (width, height), (w, h) = case["from"], case["to"]
    out = fit(coded(width, height), w, h, tuple(case.get("shift", (0.0, 0.0)))).astype(int)
    assert (out[0, :, 0] + 256 * out[0, :, 2]).tolist() == case["columns"]
    assert out[:, 0, 1].tolist() == case["rows"]


@pytest.mark.parametrize("case", SPEC["inked"], ids=[c["about"] for c in SPEC["inked"]])
def test_python_sees_ink_as_the_spec_says(case: dict) -> None:
    assert inked(picture(case["image"])) is case["inked"]


def test_the_unshifted_grid_is_pillows_nearest() -> None:
    """inputs.nearest, which cuts the shifted phases, is Pillow's NEAREST (what fit() uses unshifted) at shift 0."""
    from PIL import Image

    from kcaptcha_solver.inputs import nearest

    rng = np.random.default_rng(0)
    for _ in range(300):
        (width, w), (height, h) = rng.integers(1, 700, 2), rng.integers(1, 256, 2)  # rows are coded in one byte
        pillow = np.asarray(Image.fromarray(coded(width, height)).resize((int(w), int(h)), Image.NEAREST)).astype(int)
        assert (pillow[0, :, 0] + 256 * pillow[0, :, 2]).tolist() == nearest(int(width), int(w)).tolist()
        assert pillow[:, 0, 1].tolist() == nearest(int(height), int(h)).tolist()


def test_the_page_reads_routes_and_resamples_as_the_spec_says() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is needed (Node 18+): the page's reading.js is checked in Node")
    done = subprocess.run(["node", "--input-type=module", "-e", NODE_JS, str(FIXTURE)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    for case, answer in zip(SPEC["read"], got["read"], strict=True):
        assert answer == expected(case), case["about"]
    assert got["route"] == [case["model"] for case in SPEC["route"]]
    assert got["fit"] == [{"columns": case["columns"], "rows": case["rows"]} for case in SPEC["fit"]]
    assert got["prefer"] == [case["prefer"] for case in SPEC["prefer"]]
    assert got["doubt"] == [case["doubt"] for case in SPEC["prefer"]]
    assert got["likeliest"] == [case["chosen"] for case in SPEC["likeliest"]]
    assert got["inked"] == [case["inked"] for case in SPEC["inked"]]


@pytest.mark.parametrize("case", SPEC["likeliest"], ids=[c["about"] for c in SPEC["likeliest"]])
def test_python_picks_the_likeliest_reading_as_the_spec_says(case: dict) -> None:
    model = info(case["model"])
    readings = [(read(p, model), p) for p in (np.asarray(r, np.float32) for r in case["readings"])]
    chosen = likeliest(readings, model)
    assert [k for k, r in enumerate(readings) if r is chosen] == [case["chosen"]]


@pytest.mark.parametrize("case", SPEC["prefer"], ids=[c["about"] for c in SPEC["prefer"]])
def test_python_prefers_the_general_model_as_the_spec_says(case: dict) -> None:
    general, probs = info(case["model"]), np.asarray(case["probs"], np.float32)
    assert prefer_general(case["first"], read(probs, general), probs, general) == case["prefer"]
    specialist = info(case.get("specialist", "pos"))
    assert general_doubts(case["first"], read(probs, general), probs, general, specialist) == case["doubt"]



def test_the_ctc_score_sums_every_alignment() -> None:
    """string_score("ctc") against enumerating every path of a small model: the probability of each
    string is the sum over the paths that collapse to it, and the strings' probabilities sum to 1."""
    import itertools

    from kcaptcha_solver.solver import string_score

    rng = np.random.default_rng(13)
    probs = rng.dirichlet(np.ones(3), size=5).astype(np.float32)  # 5 steps over "ab" + blank
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(3), repeat=5):
        string = tuple(c for k, c in enumerate(path) if c != 2 and (k == 0 or c != path[k - 1]))
        totals[string] = totals.get(string, 0.0) + float(np.prod(probs[range(5), path].astype(np.float64)))
    for string, total in totals.items():
        assert string_score(probs, list(string), "ctc", 2) == pytest.approx(total, rel=1e-12, abs=1e-15)
    assert sum(totals.values()) == pytest.approx(1.0)
