"""The shipped models on the real PHP images: CI fails if any model loses accuracy."""

from __future__ import annotations

import json

import pytest

from kcaptcha_solver.cli import main

# (model, shared folder, minimum full-string accuracy): the figures the models issue asks for.
GATES = [
    ("gnuboard5", "gnuboard5", 0.998),
    ("seed-l2", "seed-l2", 1.0),
    ("kcaptcha-default", "kcaptcha-default", 0.994),
]


@pytest.mark.parametrize(("model", "folder", "minimum"), GATES)
def test_shipped_model_accuracy_on_real_php_images(model, folder, minimum, shared_dir, capsys, tmp_path):
    code = main(["evaluate", str(shared_dir / folder), "--model", model, "--json",
                 "--gallery", str(tmp_path / "errors.png")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["count"] == 500 and not report["skipped"]
    assert report["accuracy"] >= minimum, report["errors"]
    assert len(report["errors"]) == round(500 * (1 - report["accuracy"]))


def test_models_lists_three_small_models(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) >= {"gnuboard5", "seed-l2", "kcaptcha-default"}
    for row in rows.values():
        assert 0 < row["bytes"] <= 1024 * 1024
    assert rows["kcaptcha-default"]["height"] == 92 and rows["gnuboard5"]["classes"] == "0123456789"


def test_models_table_mentions_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("gnuboard5", "seed-l2", "kcaptcha-default"):
        assert name in out
