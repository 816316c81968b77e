"""The general model's task (preset 'any'): its samples, families, seeds, and the pipeline end to end."""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import replace

import numpy as np
import onnx
import pytest
from PIL import Image, ImageOps

from kcaptcha_solver import Solver, general
from kcaptcha_solver.cli import main
from kcaptcha_solver.errors import ConfigError
from kcaptcha_solver.export import export_onnx, metadata
from kcaptcha_solver.fonts import FONTS_1_2
from kcaptcha_solver.generator import ALPHABET, PRESETS, SYMBOL_SETS, Generator, random_config
from kcaptcha_solver.inputs import fit
from kcaptcha_solver.model import ModelSpec, build
from kcaptcha_solver.solver import read
from kcaptcha_solver.trainconfig import TrainConfig

SEED = 4_000_000  # a training-range block
GENERAL_MODEL = general.MODEL_NAME


@pytest.fixture(autouse=True)
def _every_atlas(all_fonts, monkeypatch):
    """random_config picks the 22 older atlases too."""
    monkeypatch.setenv("KCAPTCHA_FONTS", str(all_fonts))


def test_a_sample_is_its_seeds_configuration_drawn_and_stretched_to_the_input():
    config = random_config(random.Random(SEED))
    drawn = Generator(config).draw(SEED, boxes=False)
    pixels, label = general.draw(SEED)
    assert pixels.shape == (general.HEIGHT, general.WIDTH, 3) and pixels.dtype == np.uint8
    assert label == drawn.label and set(label) <= set(config.allowed_symbols)
    assert np.array_equal(pixels, fit(drawn.pixels(), general.WIDTH, general.HEIGHT))
    assert np.array_equal(general.draw(SEED)[0], pixels)  # reproducible per seed


def test_samples_cover_the_space():
    configs = [general.FAMILIES[general.NAME](random.Random(SEED + i)) for i in range(300)]
    labels = [general.draw(SEED + i)[1] for i in range(60)]
    assert {c.engine for c in configs} == {"1.2", "1.2-original", "2.x"}
    assert {len(c.fonts) for c in configs} == {3, 22}
    assert {len(text) for text in labels} <= set(range(general.LENGTH[0], general.LENGTH[1] + 1))
    assert len({c.image_size for c in configs}) > 100


def test_a_configuration_whose_text_never_fits_is_skipped_for_the_seeds_next_one():
    seed = 31_886_566  # 7 of "0dhmy" in 149 px without spaces: PHP's 2.x would redraw forever
    never = random_config(random.Random(seed))
    assert never.allowed_symbols == "0dhmy" and never.width == 149
    with pytest.raises(ConfigError, match="never fits"):
        Generator(never).draw(seed, boxes=False)
    rng = random.Random(seed)
    random_config(rng)
    taken = random_config(rng)
    drawn, label = general.sample(seed), general.draw(seed)[1]
    assert drawn.label == label and set(label) <= set(taken.allowed_symbols)
    config, same = general.configured(seed)  # what benchmarks/any_settings.py groups by: the one drawn
    assert config == taken and np.array_equal(same.raster, drawn.raster)


@pytest.mark.parametrize("family", sorted(general.FAMILIES))
def test_each_family_draws_what_its_name_says(family):
    drawn = general.sample(SEED, family=family)
    config = general.FAMILIES[family](random.Random(SEED))
    assert set(drawn.label) <= set(general.TASK.classes)
    if family == "hex-160x60":
        assert drawn.raster.shape[:2] == (60, 160) and set(config.allowed_symbols) == set("0123456789abcdef")
    elif family == "gnuboard5-pre-5.1":
        assert drawn.raster.shape[:2] == (60, 120) and config.fonts == FONTS_1_2
        assert config.white_noise_density == config.black_noise_density == 0
    elif family == "2.x-alnum":
        assert config.engine == "2.x" and config.allowed_symbols == ALPHABET
    elif family != general.NAME:  # a preset: its own images, seed for seed
        assert np.array_equal(drawn.raster, Generator(family).draw(SEED, boxes=False).raster)


def test_preset_any_has_a_task_but_no_single_configuration():
    cfg = TrainConfig(preset="any")
    assert cfg.task() == general.Task(192, 64, ALPHABET, (2, 7))
    assert cfg.families and general.NAME not in cfg.families
    with pytest.raises(ConfigError, match="no single one"):
        cfg.captcha_config()
    with pytest.raises(ConfigError, match="draws its own"):
        TrainConfig(preset="any", config={"width": 120}).task()
    assert TrainConfig().task() == general.Task(160, 60, "0123456789", (6, 6))
    # model cards name --family-count only where it validates something
    assert "--family-count" in cfg.recipe_args() and "--family-count" not in TrainConfig().recipe_args()


def test_family_validation_seeds_are_checked_too():
    """The family sets follow the main one: with preset any they reach the reserved range here."""
    near = {"val_seed": 69_990_000, "val_count": 2000, "family_count": 2000}
    TrainConfig(preset="gnuboard5", **near).check_seeds()  # 2,000 images: clear of 70,000,000
    with pytest.raises(ConfigError, match="validation seeds 69990000..70003999 overlap"):
        TrainConfig(preset="any", **near).check_seeds()


def test_ctc_any_fits_the_issue_budget(tmp_path):
    """<= 1 MiB as exported (the 3 ms budget is measured by benchmarks/any_input.py --speed)."""
    task = general.TASK
    spec = ModelSpec("ctc-any", task.height, task.width, task.length[1], task.classes)
    model = build(spec).eval()
    path = export_onnx(model, metadata(spec, "t", "any", task, "ctc"), tmp_path / "t.onnx")
    assert path.stat().st_size <= 1 << 20
    assert model.steps == 48  # 4-px steps: 7 glyphs of >= 13 px after the stretch each get 3


@pytest.mark.slow
def test_train_any_export_and_read_back(tmp_path, capsys):
    """preset any through train (with resume), export to ONNX and TF.js, and Solver on PHP-encoded files."""
    run, out = tmp_path / "run", tmp_path / "export"
    args = ["train", "--preset", "any", "--arch", "ctc-tiny", "--epochs", "1", "--steps", "4", "--batch-size", "8",
            "--val-count", "16", "--family-count", "4", "--out", str(run), "--quiet"]
    assert main(args) == 0
    assert "+ 4 per family x 6" in capsys.readouterr().out
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [k for k in rows[0] if k.startswith("val_acc_")] == [f"val_acc_{f}" for f in TrainConfig(
        preset="any").families]
    assert main([*args, "--resume"]) == 0  # nothing left to do: same history
    assert list(csv.DictReader((run / "metrics.csv").open())) == rows

    assert main(["export", str(run / "best.pt"), "--out", str(out), "--format", "onnx", "--format", "tfjs"]) == 0
    path = out / "kcaptcha-any.onnx"
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert (meta["kcaptcha.name"], meta["kcaptcha.preset"], meta["kcaptcha.decoder"]) == ("kcaptcha-any", "any", "ctc")
    assert (meta["kcaptcha.width"], meta["kcaptcha.height"], meta["kcaptcha.classes"]) == ("192", "64", ALPHABET)
    assert (meta["kcaptcha.length_min"], meta["kcaptcha.length_max"]) == ("2", "7")
    tfjs = json.loads((out / "tfjs" / "kcaptcha-any" / "model.json").read_text())
    assert tfjs["userDefinedMetadata"]["kcaptcha"]["width"] == 192

    solver = Solver(path)
    drawn = general.sample(SEED, family="gnuboard5-pre-5.1")  # 120x60: stretched by the solver
    result = solver.solve(drawn.encode())
    assert result.model == "kcaptcha-any" and result.resized
    # the solver reads exactly what training fed the network: the same decode and the same stretch
    trained_on = general.draw(SEED, family="gnuboard5-pre-5.1")[0]
    probs = solver._sessions["kcaptcha-any"].run(["probs"], {"image": trained_on[None]})
    expected = read(probs[0][0], solver.info)
    assert (result.text, result.confidence) == (expected.text, expected.confidence)


# The shipped general model (issue 13) on generated captchas of configurations the preset models do not read:
# fixed seeds (a training-range block no run used), PHP-encoded at their own size and read by Solver("auto") as a
# user's would be. The gates are 4 points under what the shipped file reads here (a model trained on this CPU, far
# from issue 13's 99 %), so CI fails when a change loses accuracy (models/kcaptcha-any.md measures it on 1,000 per
# family); a wrong answer of the general model is never sure.
CHECK_SEED, CHECK_COUNT = 5_000_000, 200
# Read on these 200 when shipped (the GPU-trained general model, reading found captchas' whole pictures too): any
# 89.0 %, gnuboard5-pre-5.1 96.0 %, 2.x-alnum 82.5 %, hex-160x60 100 % (the gnuboard5 model, which learned
# Gnuboard's hex line too). The CPU-trained one, reading the crops, read 72.0, 90.0, 58.0 and 100 %.
AUTO_GATES = {"any": 85.0, "gnuboard5-pre-5.1": 92.0, "2.x-alnum": 78.0, "hex-160x60": 98.5}


@pytest.fixture(scope="module")
def auto() -> Solver:
    return Solver()


@pytest.mark.parametrize("family", AUTO_GATES)
def test_auto_reads_other_configurations_with_the_general_model(auto, family):
    samples = [general.sample(seed, family=family) for seed in range(CHECK_SEED, CHECK_SEED + CHECK_COUNT)]
    results = auto.solve_many([s.encode() for s in samples])
    right = [r.text == s.label for r, s in zip(results, samples, strict=True)]
    assert 100 * sum(right) / len(right) >= AUTO_GATES[family]
    by = {r.model for r in results}
    if family == "hex-160x60":  # Gnuboard's size and style: its model reads hex too, the general model what it doubts
        assert "gnuboard5" in by and by <= {"gnuboard5", GENERAL_MODEL}
    else:
        assert GENERAL_MODEL in by and by <= {GENERAL_MODEL, *PRESETS}
    assert not [s.label for r, s, ok in zip(results, samples, right, strict=True) if r.sure and not ok]


# A preset's settings with another symbol set (a site that edited allowed_symbols): (accuracy gate, most wrong answers
# allowed sure) on 100 captchas. When written, auto read 89/5, 98/0, 88/1 and 97/0 (89/4 once a reading with a symbol
# the specialist does not know doubted at solver.DOUBTFUL_FOREIGN); before the general model checked the specialists'
# sure answers, 51/47, 46/52, 78/15 and 88/9 (a specialist reads a symbol it never saw as its own).
FOREIGN_GATES = {("seed-l2", "all"): (84, 8), ("seed-l2", "kcaptcha-2.x"): (93, 2),
                 ("kcaptcha-default", "digits"): (83, 4), ("gnuboard5", "kcaptcha-2.x"): (92, 2)}


@pytest.mark.parametrize(("preset", "symbols"), FOREIGN_GATES)
def test_auto_checks_a_specialists_answers_on_its_settings_with_other_symbols(auto, preset, symbols):
    drawn = Generator(replace(PRESETS[preset], name="edited", allowed_symbols=SYMBOL_SETS[symbols]))
    samples = [drawn.draw(seed, boxes=False) for seed in range(CHECK_SEED, CHECK_SEED + 100)]
    results = auto.solve_many([s.encode() for s in samples])
    gate, sure_wrong = FOREIGN_GATES[preset, symbols]
    assert sum(r.text == s.label for r, s in zip(results, samples, strict=True)) >= gate
    assert sum(r.sure and r.text != s.label for r, s in zip(results, samples, strict=True)) <= sure_wrong
    assert {r.model for r in results} == {preset, GENERAL_MODEL}
    doubted = re.compile(f"the general model '{GENERAL_MODEL}' reads it as '[0-9a-z]+': the answer is unsure")
    assert all(not r.sure and r.model == preset and doubted.fullmatch(r.warning) for r in results if r.warning)


def test_gnuboard5s_sure_digits_are_not_read_again_but_its_letters_are(auto, shared_dir, monkeypatch):
    """gnuboard5's file trusts its digits (Reading.trusted), so its 1 ms path stays one model run; a sure reading
    with a letter (a site on Gnuboard's hex line) is checked by the general model, and a preset model that trusts
    nothing (seed-l2) is checked every time."""
    runs: list[str] = []
    run = Solver._run
    monkeypatch.setattr(Solver, "_run", lambda self, info, pics: runs.append(info.name) or run(self, info, pics))
    assert auto.models["gnuboard5"].reading.trusted == "0123456789"
    digits = auto.solve(next((shared_dir / "gnuboard5").glob("*.jpg")))
    assert digits.sure and runs == ["gnuboard5"]
    hex_line = general.sample(CHECK_SEED + 1, family="hex-160x60")
    assert not hex_line.label.isdigit()
    runs.clear()
    letters = auto.solve(hex_line.encode())
    assert letters.text == hex_line.label and runs == ["gnuboard5", GENERAL_MODEL]
    runs.clear()
    assert auto.solve(next((shared_dir / "seed-l2").glob("*.png"))).sure and runs == ["seed-l2", GENERAL_MODEL]


def test_a_captcha_filling_a_captcha_sized_picture_is_read_whole_by_the_general_model_too(auto):
    """Another configuration's captcha can fill its picture with a preset's shape: the preset model reads the crop,
    the general model the whole picture (what it was trained on, not the crop resampled to the preset's size and
    stretched again), and when the general model's answer stands it is that whole reading, box None."""
    general_solver = Solver(GENERAL_MODEL)
    replaced = kept = 0
    for seed in range(CHECK_SEED, CHECK_SEED + 200):
        drawn = general.sample(seed)
        data = drawn.encode()
        picture = auto._picture(data)[0]
        if picture.box is None:
            continue
        if picture.entire is not None:  # the find fills the picture
            assert np.array_equal(picture.entire, drawn.pixels())
        got = auto.solve(data)
        if got.model == GENERAL_MODEL:
            whole = general_solver.solve(data)
            assert (got.text, got.score, got.box) == (whole.text, whole.score, None)
            replaced += 1
        else:
            assert got.box == picture.box
            kept += 1
    assert replaced >= 30 and kept >= 5  # 66 and 11 when written


def test_a_picture_narrower_than_kcaptcha_draws_is_a_shrunk_view_not_another_configuration(auto, shared_dir):
    """kcaptcha-default's 160x92 with its border cut from a DPR-1 screenshot is 68x40: captcha-sized, but no
    configuration draws a captcha under 100 px wide, so the general model does not read it again whole (it read
    this one ``apc``, in place of the preset model's right answer)."""
    path = shared_dir / "kcaptcha-default" / "bapkc_000298.jpg"
    with Image.open(path) as im:
        shown = ImageOps.expand(im.convert("RGB").resize((66, 38), Image.BOX), 1, fill=(137, 137, 137))
    picture = auto._picture(np.asarray(shown))[0]
    assert picture.box == (1, 1, 66, 38) and picture.entire is None
    got = auto.solve(np.asarray(shown))
    assert (got.text, got.model, got.box) == ("bapkc", "kcaptcha-default", (1, 1, 66, 38))


def test_auto_routes_a_captcha_of_no_presets_size_to_the_general_model(auto):
    """Gnuboard 5 before 5.1 drew 120x60: no preset model's size, so the general model reads it whole; a preset
    image still goes to its own model, and a named preset model forced on the 120x60 one says whose it is."""
    drawn = general.sample(CHECK_SEED + 15, family="gnuboard5-pre-5.1")  # the first of these it is sure of
    result = auto.solve(drawn.encode())
    assert (result.model, result.box, result.resized, result.warning) == (GENERAL_MODEL, None, True, None)
    # the calibration covers a whole picture stretched to the input: resized, yet sure
    assert result.text == drawn.label and result.sure
    preset = general.sample(CHECK_SEED, family="gnuboard5")
    assert auto.solve(preset.encode()).model == "gnuboard5"
    forced = Solver("gnuboard5").solve(drawn.encode())
    assert not forced.sure and "looks like one for model 'kcaptcha-any'" in forced.warning
