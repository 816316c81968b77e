"""The shipped models on the real PHP images: CI fails if any model loses accuracy."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from conftest import GENERAL, MIN_ACCURACY, MODELS, ROOT, SHIPPED

from kcaptcha_solver.cli import main
from kcaptcha_solver.modelfile import Reading, bare
from kcaptcha_solver.solver import MODELS_DIR


def test_every_shipped_model_has_an_accuracy_target():
    assert sorted(MODELS) == sorted(MIN_ACCURACY)


@pytest.mark.parametrize("model", MODELS)
def test_shipped_model_accuracy_on_real_php_images(model, shared_dir, capsys, tmp_path):
    """The one accuracy gate: `kcaptcha evaluate --model auto` on the real PHP images of each model's
    preset, so every image is also routed to the right model, as a user's "auto" would. It checks the
    calibration too (issue 13): no wrong answer is marked sure, and most answers are sure."""
    preset = next(m.preset for m in SHIPPED if m.name == model)
    code = main(["evaluate", str(shared_dir / preset), "--model", "auto", "--json", "--min-accuracy",
                 str(MIN_ACCURACY[model]), "--gallery", str(tmp_path / "errors.png")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["errors"]
    assert report["count"] == 500 and not report["skipped"]
    # each image routed to its model; the general model may answer what that model doubted (Solver._read)
    assert report["models"].get(model, 0) >= 495 and set(report["models"]) <= {model, GENERAL}
    assert 100 * report["accuracy"] >= MIN_ACCURACY[model]
    assert len(report["errors"]) == round(500 * (1 - report["accuracy"]))
    assert report["sure_errors"] == 0, [e for e in report["errors"] if e["sure"]]
    assert not any(e["sure"] for e in report["errors"])
    assert report["share_sure"] >= 0.95 and report["sure_accuracy"] == 1.0


def test_models_lists_small_models(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {*MODELS, GENERAL}
    for row in rows.values():
        assert 0 < row["bytes"] <= 1024 * 1024
    assert rows["kcaptcha-default"]["height"] == 92
    assert rows["gnuboard5"]["classes"] == "0123456789abcdef"  # Gnuboard's digits, and its hex line


def test_models_table_mentions_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in (*MODELS, GENERAL):
        assert name in out


@pytest.mark.parametrize("model", MODELS)
def test_reading_thresholds_travel_in_both_model_files(model):
    """What Python and the page read answers with is in the ONNX file and in model.json alike, every field
    written (none left to a default), and sure_min is the one tools/calibrate.py chose on generated images."""
    import onnx

    onnx_meta = {p.key: p.value for p in onnx.load(str(MODELS_DIR / f"{model}.onnx")).metadata_props}
    tfjs_meta = json.loads((MODELS_DIR / "tfjs" / model / "model.json").read_text())["userDefinedMetadata"]["kcaptcha"]
    reading = Reading.from_meta(bare(onnx_meta))
    assert reading.to_meta().items() <= onnx_meta.items()  # every field present
    assert asdict(reading).items() <= tfjs_meta.items()
    calibration = json.loads((ROOT / "benchmarks" / "results" / "calibration.json").read_text())[model]
    assert reading.sure_min == calibration["sure_min"] and calibration["sure_error_below_95pct"] < 0.1


def test_calibration_rule_is_strict_unless_too_few_would_be_sure(monkeypatch):
    """Above every wrong answer while that leaves 97 % sure; else lower, one wrong answer at a time, only while
    the sure answers' error stays below 0.1 % at 95 % confidence (a lone confident mistake cannot make most
    answers unsure; many cannot make them sure)."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from calibrate import error_bound, threshold

    assert 0.00099 < error_bound(2995, 0) < 0.001 < error_bound(2990, 0)  # the rule of three, exactly
    right = np.ones(10_000, bool)
    right[:5] = False
    strict = np.r_[[0.95, 0.9, 0.8, 0.7, 0.6], np.full(9_995, 0.99)]
    assert threshold(strict, right) == 0.9501
    lone = np.r_[[0.9992, 0.9, 0.8, 0.7, 0.6], np.full(9_995, 0.99)]  # above 0.9992, none would be sure
    assert threshold(lone, right) == 0.9001
    many = np.r_[np.full(40, 0.9992), np.full(9_960, 0.99)]
    right[:40] = False
    assert threshold(many, right) == 0.9993  # 40 wrong among them would break the promise: none sure


def test_calibrate_measures_generated_images_only(tmp_path):
    """tools/calibrate.py refuses the evaluation seeds, and its dry run measures without writing."""
    import subprocess
    import sys

    tool = [sys.executable, str(ROOT / "tools" / "calibrate.py"), str(MODELS_DIR), "--only", "seed-l2", "--dry-run"]
    refused = subprocess.run([*tool, "--seed", "69999990", "--count", "20"], capture_output=True, text=True)
    assert refused.returncode == 1 and "touch the evaluation range" in refused.stderr
    before = (MODELS_DIR / "seed-l2.onnx").read_bytes()
    done = subprocess.run([*tool, "--count", "200", "--holdout", "100"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout)["seed-l2"]
    assert (row["images"], row["seeds"], row["holdout"]["seeds"]) == (200, [95000000, 95000199], [96000000, 96000099])
    assert row["wrong_and_sure"] == 0 and row["sure_min"] >= 0.5
    assert (MODELS_DIR / "seed-l2.onnx").read_bytes() == before
