"""Training, export and evaluation end to end, plus their refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import sample_files
from PIL import Image

from kcaptcha_solver.cli import main
from kcaptcha_solver.errors import ConfigError, ModelError
from kcaptcha_solver.model import ModelSpec, build, load_checkpoint
from kcaptcha_solver.train import TrainConfig, init_from, targets_for


def test_targets_pad_with_the_none_class():
    t = targets_for(["ab", "abc"], "abc", 4)
    assert t.tolist() == [[0, 1, 3, 3], [0, 1, 2, 3]]


@pytest.mark.parametrize(("flag", "value"), [("--seed", "70000000"), ("--seed", "69999999"),
                                             ("--val-seed", "85000000"), ("--seed", "-1")])
def test_train_refuses_reserved_or_invalid_seeds(flag, value, tmp_path, capsys):
    code = main(["train", "--preset", "seed-l2", flag, value, "--epochs", "1", "--steps", "200",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_train_refuses_unknown_preset(tmp_path, capsys):
    assert main(["train", "--preset", "gnuboard", "--out", str(tmp_path / "r")]) == 2
    assert "did you mean 'gnuboard5'" in capsys.readouterr().err.lower()


def test_train_refuses_unknown_arch_with_a_suggestion(tmp_path, capsys):
    assert main(["train", "--preset", "seed-l2", "--arch", "cnn-smal", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown architecture 'cnn-smal'") and "did you mean 'cnn-small'" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="did you mean 'ctc-wide'"):
        build(ModelSpec("ctc-wid", 60, 160, 6, "0123456789"))


def test_train_options_come_from_the_config_fields():
    """Every TrainConfig field is a `kcaptcha train` option with the field's own default."""
    from dataclasses import fields

    from kcaptcha_solver.cli import build_parser

    args = build_parser().parse_args(["train"])
    assert {f.name: getattr(args, f.name) for f in fields(TrainConfig)} == vars(TrainConfig())
    args = build_parser().parse_args(["train", "--steps", "7", "--lr", "0.5", "--fonts", "F", "--weight-decay", "0"])
    assert (args.steps_per_epoch, args.lr, args.fonts_dir, args.weight_decay) == (7, 0.5, "F", 0.0)


def test_stored_configs_load_through_from_dict():
    """Runs written before a field existed load with its default; an unknown key is named, not ignored."""
    old = {k: v for k, v in vars(TrainConfig(preset="seed-l2", epochs=3)).items() if k not in ("device", "init")}
    assert TrainConfig.from_dict(old) == TrainConfig(preset="seed-l2", epochs=3)
    with pytest.raises(ConfigError, match="unknown training setting 'epoch'.*did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize("arch", ["cnn-tiny", "ctc-tiny"])
def test_init_from_a_model_of_fewer_symbols_keeps_what_it_read(arch: str) -> None:
    """--init from a digits model into a hex one: each digit's scores (and "none") are the digits model's,
    in the new order; the new symbols are fresh; a start with a symbol the new task lacks is refused."""
    torch.manual_seed(0)
    digits = build(ModelSpec(arch, 60, 160, 6, "0123456789")).eval()
    hexa = build(ModelSpec(arch, 60, 160, 6, "0123456789abcdef")).eval()
    fresh = hexa.state_dict()["head.weight"].clone()
    init_from(hexa, digits, "digits.pt")
    image = torch.randint(0, 256, (2, 60, 160, 3), dtype=torch.uint8)
    with torch.no_grad():
        old, new = digits(image), hexa(image)
    assert torch.allclose(new[..., :10], old[..., :10], atol=1e-5)  # one matmul, blocked differently
    assert torch.allclose(new[..., 16], old[..., 10], atol=1e-5)
    rows = hexa.state_dict()["head.weight"].unflatten(0, (-1, 17))[:, 10:16]
    assert torch.equal(rows, fresh.unflatten(0, (-1, 17))[:, 10:16])
    with pytest.raises(ModelError, match="for another task"):
        init_from(build(ModelSpec(arch, 60, 160, 6, "0123456789")), hexa, "hex.pt")


@pytest.mark.parametrize(("config", "reads"), [
    ({}, True), ({"allowed_symbols": "0123456789abcdef"}, True),  # Gnuboard's hex line: digits and hex alike
    ({"allowed_symbols": "abcdef"}, False), ({"allowed_symbols": "0123456789abcdef", "width": 150}, False)])
def test_a_run_reads_its_preset_when_its_config_only_adds_symbols(config: dict, reads: bool) -> None:
    assert TrainConfig(preset="gnuboard5", config=config).reads_preset() is reads


def test_a_file_that_is_not_a_checkpoint_is_a_model_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a kcaptcha-solver checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(ModelError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_seed_ranges_are_checked_over_the_whole_run():
    cfg = TrainConfig(seed=69_999_000, epochs=1, steps_per_epoch=100, batch_size=11)
    with pytest.raises(ValueError, match="reserved"):
        cfg.check_seeds()


@pytest.mark.parametrize("device", ["cuda", "tpu"])
def test_train_refuses_a_device_it_cannot_use(device, tmp_path, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = main(["train", "--preset", "seed-l2", "--device", device, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert device in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_train_on_the_gpu_writes_a_cpu_checkpoint(tmp_path):
    """--device auto picks the GPU; the checkpoint still loads (and exports) on a machine without one."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "seed-l2", "--arch", "cnn-tiny", "--epochs", "1", "--steps", "20",
                 "--batch-size", "48", "--val-count", "100", "--workers", "2", "--out", str(run), "--quiet"]) == 0
    ckpt = torch.load(run / "best.pt", weights_only=False)  # tensors come back where they were saved
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    assert ckpt["metrics"]["device"] == torch.cuda.get_device_name()
    assert main(["export", str(run / "best.pt"), "--out", str(tmp_path / "export")]) == 0


@pytest.mark.slow
def test_train_export_evaluate_end_to_end(tmp_path, shared_dir, capsys):
    """A real (tiny, short) run through every step of the pipeline, as CI's smoke test."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "seed-l2", "--arch", "cnn-tiny", "--epochs", "2", "--steps", "40",
                 "--batch-size", "48", "--val-count", "200", "--workers", "1", "--out", str(run),
                 "--quiet"]) == 0
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "train_config.json"):
        assert (run / name).is_file()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,samples")
    assert rows[0].endswith(",device") and rows[1].endswith(",cpu")
    # resume continues after the last finished epoch: nothing left to do, same history
    assert main(["train", "--preset", "seed-l2", "--arch", "cnn-tiny", "--epochs", "2", "--steps", "40",
                 "--batch-size", "48", "--val-count", "200", "--out", str(run), "--resume", "--quiet"]) == 0
    assert (run / "metrics.csv").read_text().splitlines() == rows

    # --init fine-tunes from a checkpoint of the same task, and refuses one of another task
    tuned = tmp_path / "tuned"
    assert main(["train", "--preset", "seed-l2", "--arch", "cnn-tiny", "--epochs", "1", "--steps", "5",
                 "--batch-size", "16", "--val-count", "50", "--seed", "3000000", "--init", str(run / "best.pt"),
                 "--out", str(tuned), "--quiet"]) == 0
    assert (tuned / "best.pt").is_file()
    capsys.readouterr()
    assert main(["train", "--preset", "gnuboard5", "--arch", "cnn-tiny", "--epochs", "1", "--steps", "5",
                 "--init", str(run / "best.pt"), "--out", str(tmp_path / "wrong"), "--quiet"]) == 1
    assert "for another task" in capsys.readouterr().err
    assert main(["train", "--preset", "seed-l2", "--arch", "cnn-small", "--epochs", "1", "--steps", "5",
                 "--init", str(run / "best.pt"), "--out", str(tmp_path / "wider"), "--quiet"]) == 1
    assert "cnn-tiny weights do not fit cnn-small" in capsys.readouterr().err

    out = tmp_path / "export"
    assert main(["export", str(run / "best.pt"), "--out", str(out)]) == 0
    model = out / "seed-l2.onnx"
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert meta["kcaptcha.classes"] == "0123456789" and meta["kcaptcha.length_max"] == "2"
    assert meta["kcaptcha.width"] == "160" and meta["kcaptcha.height"] == "60"

    capsys.readouterr()
    assert main(["evaluate", str(shared_dir / "seed-l2"), "--model", str(model), "--json",
                 "--gallery", str(tmp_path / "g.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 500
    # two short epochs of a 30k-parameter net: far from perfect, far above chance (1 %)
    assert report["char_accuracy"] > 0.5
    assert len(report["errors"]) == 500 - round(500 * report["accuracy"])


@pytest.fixture(scope="module")
def dev_model(tmp_path_factory) -> Path:
    """An untrained exported model: enough to exercise evaluate's input handling."""
    from kcaptcha_solver.export import export_onnx, metadata
    from kcaptcha_solver.generator import get_preset
    from kcaptcha_solver.model import ModelSpec, build

    spec = ModelSpec("cnn-tiny", 60, 160, 2, "0123456789")
    path = tmp_path_factory.mktemp("m") / "dev.onnx"
    meta = metadata(spec, "dev", "seed-l2", get_preset("seed-l2"), "positions")
    return export_onnx(build(spec).eval(), meta, path)


def _evaluate(args, capsys):
    code = main(["evaluate", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_evaluate_empty_folder(tmp_path, dev_model, capsys):
    code, _, err = _evaluate([str(tmp_path), "--model", str(dev_model)], capsys)
    assert code != 0 and "empty" in err and "Traceback" not in err


# A picture of another size than the model's, read whole (no frame in it), with ink (a blank one is no captcha)
NOISE = np.random.default_rng(0).integers(0, 256, (40, 100, 3), dtype=np.uint8)


def test_evaluate_skips_and_reports_bad_files(tmp_path, dev_model, shared_dir, capsys):
    good = sorted((shared_dir / "seed-l2").iterdir())[:3]
    for p in good:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "nolabel.png").write_bytes(good[0].read_bytes())
    (tmp_path / "12_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(NOISE).save(tmp_path / "34_small.png")
    code, out, _ = _evaluate([str(tmp_path), "--model", str(dev_model), "--json",
                              "--gallery", str(tmp_path / "g" / "e.png")], capsys)
    report = json.loads(out)
    assert code == 0 and report["count"] == 3
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"nolabel.png", "12_corrupt.png", "34_small.png"}
    assert "size 100x40" in reasons["34_small.png"] and "not a readable image" in reasons["12_corrupt.png"]


def test_evaluate_only_unusable_files_is_an_error(tmp_path, dev_model, capsys):
    Image.fromarray(NOISE).save(tmp_path / "34_small.png")
    code, _, err = _evaluate([str(tmp_path), "--model", str(dev_model)], capsys)
    assert code != 0 and "no usable images" in err and "size 100x40" in err


def test_screen_views_are_seeded_and_keep_the_size(shared_dir: Path) -> None:
    """--screen: a share of a batch becomes screen views (shrunk or enlarged, then back), the same per seed."""
    from kcaptcha_solver.train import screen_views

    batch = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sample_files(shared_dir / "gnuboard5")[:8]])
    same = batch.copy()
    screen_views(same, TrainConfig(screen=0.0), 5)
    assert np.array_equal(same, batch)
    a, b, smaller = batch.copy(), batch.copy(), batch.copy()
    screen_views(a, TrainConfig(screen=1.0), 5)
    screen_views(b, TrainConfig(screen=1.0), 5)
    assert a.shape == batch.shape and np.array_equal(a, b)
    assert all(not np.array_equal(a[i], batch[i]) for i in range(len(batch)))
    screen_views(smaller, TrainConfig(screen=1.0, screen_min=0.3), 5)  # --screen-min widens the scales drawn
    assert not np.array_equal(smaller, a)
    # --screen-min and --screen-max bound the scale: views shrunk to 0.35x lose more of the image than at 1.5x
    shrunk, enlarged = batch.copy(), batch.copy()
    screen_views(shrunk, TrainConfig(screen=1.0, screen_min=0.35, screen_max=0.35), 5)
    screen_views(enlarged, TrainConfig(screen=1.0, screen_min=1.5, screen_max=1.5), 5)
    lost = [np.abs(v.astype(int) - batch.astype(int)).mean() for v in (shrunk, enlarged)]
    assert lost[0] > 2 * lost[1]


def test_screen_views_are_cut_as_a_found_box_is_with_its_edges_on_the_border_at_times() -> None:
    """locate.py's box edges fall from most of a screen pixel outside the image (its 1-px border, blended) to one
    inside: a view of a white image shows the border at an edge in some views, never inside."""
    from kcaptcha_solver.train import screen_view

    white = np.full((92, 160, 3), 255, np.uint8)
    rng = np.random.default_rng(11)
    views = [screen_view(white, rng, 0.5, 0.5) for _ in range(60)]
    edges = [(v[:, 0], v[:, -1], v[0], v[-1]) for v in views]
    bordered = [sum(bool((e < 250).all()) for e in four) for four in edges]
    assert 0.2 < np.mean([b > 0 for b in bordered]) < 0.95  # some views reach the border, not all
    assert all((v[6:-6, 6:-6] == 255).all() for v in views)  # 3 screen pixels in: the image alone


def test_browser_resize_keeps_a_same_size_image_and_halves_by_the_mean_of_2x2() -> None:
    from kcaptcha_solver.train import browser_resize

    image = np.random.default_rng(3).integers(0, 256, (92, 160, 3)).astype(np.uint8)
    assert np.array_equal(browser_resize(image, (160, 92), (0, 0, 160, 92)), image)
    means = image.astype(float).reshape(46, 2, 80, 2, 3).mean(axis=(1, 3))
    assert np.array_equal(browser_resize(image, (80, 46), (0, 0, 160, 92)), np.rint(means).astype(np.uint8))


@pytest.mark.slow
def test_browser_resize_draws_a_captcha_as_chromium_does(shared_dir: Path) -> None:
    """Real captchas drawn by Chromium (the screenshots' browser) at a whole-pixel box, shrunk to Gnuboard's
    sizes and enlarged: browser_resize is within 2 levels of it where PIL's bilinear filter, which the screen
    views used alone before, is twice as far or more."""
    import base64
    import io

    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from kcaptcha_solver.screenshot import CHROMIUM, CHROMIUM_ARGS
    from kcaptcha_solver.train import browser_resize

    paths = sample_files(shared_dir / "kcaptcha-default")[:2] + sample_files(shared_dir / "gnuboard5")[:2]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for scale in (0.41, 0.52, 0.633, 1.5):  # kcaptcha-default at DPR 1 and 1.25, gnuboard5 at DPR 1, enlarged
            ours, pil = [], []
            for path in paths:
                image = np.asarray(Image.open(path).convert("RGB"))
                h, w = image.shape[:2]
                size = (round(w * scale), round(h * scale))
                png = io.BytesIO()
                Image.fromarray(image).save(png, "PNG")
                src = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
                page = browser.new_page(viewport={"width": 400, "height": 200})
                page.set_content(f'<body style="margin:0"><img src="{src}" style="position:absolute;left:0;top:0;'
                                 f'width:{size[0]}px;height:{size[1]}px">', wait_until="load")
                drawn = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))[:size[1], :size[0]]
                page.close()
                inner = (slice(2, -2), slice(2, -2))  # the edges blend with the page
                for made, out in ((browser_resize(image, size, (0, 0, w, h)), ours),
                                  (np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)), pil)):
                    out.append(np.abs(made.astype(int) - drawn)[inner].mean())
            assert np.mean(ours) <= 2, (scale, ours)
            if scale < 1:
                assert np.mean(pil) >= 2 * np.mean(ours), (scale, pil, ours)
        browser.close()


@pytest.mark.parametrize("scales", [["--screen-min", "0"], ["--screen-max", "3"],
                                    ["--screen-min", "0.6", "--screen-max", "0.5"]])
def test_train_refuses_screen_scales_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture, scales: list[str]
) -> None:
    code = main(["train", "--preset", "seed-l2", "--screen", "0.5", *scales, "--epochs", "1",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "--screen-min and --screen-max" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--screen", "1.5", "screen share"), ("--other-symbols", "-0.1", "other-symbols share"),
    ("--other-symbols", "1.2", "other-symbols share")])
def test_train_refuses_a_share_outside_0_to_1(
    tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str, message: str
) -> None:
    code = main(["train", "--preset", "seed-l2", flag, value, "--epochs", "1", "--out", str(tmp_path / "run")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_other_symbols_draw_a_share_of_captchas_with_another_symbol_set(shared_dir: Path) -> None:
    """--other-symbols: the model reads the 36 symbols; that share of the images (picked per seed, the same on every
    call) has one of the other sets' symbols, drawn otherwise as the preset draws (same size, length, style)."""
    from kcaptcha_solver.generator import SYMBOL_SETS
    from kcaptcha_solver.train import drawer

    plain = TrainConfig(preset="kcaptcha-default", fonts_dir=str(shared_dir / "fonts"))
    mixed = replace(plain, other_symbols=0.5)
    assert mixed.task().classes == "0123456789abcdefghijklmnopqrstuvwxyz" != plain.task().classes
    own, draw = drawer(plain), drawer(mixed)
    seeds = range(2_000_000, 2_000_060)
    images = [draw(s) for s in seeds]
    assert [label for _, label in images] == [draw(s)[1] for s in seeds]
    same = [np.array_equal(image, own(s)[0]) for s, (image, _) in zip(seeds, images, strict=True)]
    assert 15 <= sum(same) <= 45  # the preset's own images where no other set was picked
    foreign = [label for (_, label), kept in zip(images, same, strict=True) if not kept]
    sets = {next(name for name, symbols in SYMBOL_SETS.items() if name != "kcaptcha-2.x" and set(label) <= set(symbols))
            for label in foreign}
    assert {"digits", "all"} <= sets
    assert all(image.shape == (92, 160, 3) and 5 <= len(label) <= 7 for image, label in images)
    assert any(set(label) - set(plain.task().classes) for label in foreign)
    # the card's command names it only when a run set it: the commands of runs before it existed stay as they ran
    assert "--other-symbols" not in plain.recipe_args()
    assert mixed.recipe_args()[mixed.recipe_args().index("--other-symbols") + 1] == "0.5"
