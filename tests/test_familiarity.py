"""The verdict (known / unknown class / unfamiliar photo) and its familiarity statistics, on real TensorFlow paths.

A small model is trained on discs of six colours around the colour wheel, one
class each.  A disc of a colour between two of them (teal, lime) is a photo
like the training photos of no trained class: ``unknown class``.  Noise and a
cluttered scene are like none of the training photos: ``unfamiliar photo``.
"""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import RECIPE_TINY, draw_fruit, make_image_folders
from fruitkeras import familiarity
from fruitkeras.cli import main
from fruitkeras.run_folder import FAMILIARITY_FILE
from fruitkeras.verdict_checks import CHECKS
from fruitkeras.verdict_checks.nearest_photo import BANK_SCALE

WHEEL = {"red": (220, 30, 30), "yellow": (220, 200, 30), "green": (40, 180, 40), "cyan": (30, 180, 200),
         "blue": (40, 50, 210), "magenta": (200, 40, 190)}
BETWEEN = {"teal": (35, 180, 120), "lime": (130, 190, 35)}  # halfway between two classes, same lightness


@pytest.fixture(scope="module")
def wheel_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    data = make_image_folders(base / "fruits", train_per_class=24, test_per_class=4, classes=WHEEL)
    architecture = json.loads(json.dumps(RECIPE_TINY))
    architecture["training"]["epochs"] = 6
    architecture["training"]["augmentation"] = {"flip": True, "rotation": 0.1, "zoom": 0.1, "brightness": 0.05,
                                                "hue": 0.0, "saturation": 0.0}
    (base / "wheel.json").write_text(json.dumps(architecture))
    run_dir = base / "run"
    result = CliRunner().invoke(main, ["train", str(base / "wheel.json"), "--data", str(data), "--run-dir",
                                       str(run_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    from fruitkeras.runs import load_model

    model, metadata = load_model(run_dir / "model.keras")
    return {"run_dir": run_dir, "data": data, "model": model, "familiarity": metadata["familiarity"],
            "metadata": metadata}


def model_input(pixels):
    from fruitkeras.data import fit_to_size

    return fit_to_size(pixels, (32, 32)).astype(np.float32) / 255


def cluttered_scene(rng, size=60):
    scene = np.zeros((size, size, 3), dtype=np.uint8) + rng.integers(0, 256, 3).astype(np.uint8)
    for _ in range(15):
        y, x = rng.integers(0, size - 4, size=2)
        scene[y : y + rng.integers(3, 20), x : x + rng.integers(3, 20)] = rng.integers(0, 256, 3)
    return scene


def verdicts(run, images):
    return [verdict for verdict, _ in run["familiarity"].verdicts(run["model"], np.stack(images))]


def test_training_stores_the_statistics_with_the_run(wheel_run):
    stored = familiarity.load(wheel_run["run_dir"] / FAMILIARITY_FILE, wheel_run["run_dir"] / "model.keras")
    assert stored.details["training_photos"] + stored.details["calibration_photos"] == 6 * 24
    bank = stored.states["familiarity"]["bank"]
    assert bank.shape == (stored.details["training_photos"], 16)  # the penultimate layer's 16 units
    assert bank.dtype == np.int8
    assert set(stored.thresholds) == {check.name for check, _ in CHECKS}


def test_the_bank_is_the_training_rows_and_the_thresholds_come_from_the_held_out_rest(wheel_run):
    """The stored bank is exactly the features of the run's training rows, none of its validation rows, and
    refitting on those two disjoint sets gives the stored thresholds."""
    from fruitkeras import data as datalib
    from fruitkeras.architecture import load_architecture

    settings = load_architecture(wheel_run["run_dir"] / "architecture.json").training
    listed = datalib.scan_split(wheel_run["data"] / "Training")
    split = datalib.decode_split(listed, (32, 32))
    train_rows, validation_rows = datalib.split_validation(split, settings["validation_split"], 0,
                                                           settings["validation_block"])
    assert len(validation_rows) and not set(train_rows) & set(validation_rows)
    stored = wheel_run["familiarity"]
    images = split.images[train_rows].astype(np.float32) * np.float32(datalib.PIXEL_SCALE)  # as the fit scales
    _, features, _ = familiarity.image_features(wheel_run["model"], images)
    np.testing.assert_array_equal(stored.states["familiarity"]["bank"],
                                  np.round(features * BANK_SCALE).astype(np.int8))
    refitted = familiarity.fit(wheel_run["model"], split, train_rows, validation_rows, settings["augmentation"], 0)
    assert refitted.thresholds == stored.thresholds


def test_a_new_photo_of_a_trained_class_is_known(wheel_run):
    rng = np.random.default_rng(11)
    images = [model_input(draw_fruit(colour, rng)) for colour in WHEEL.values() for _ in range(3)]
    assert verdicts(wheel_run, images).count(familiarity.KNOWN) >= 17  # of 18


def test_a_colour_between_two_classes_is_an_unknown_class(wheel_run):
    rng = np.random.default_rng(12)
    images = [model_input(draw_fruit(colour, rng)) for colour in BETWEEN.values() for _ in range(8)]
    assert verdicts(wheel_run, images).count(familiarity.UNKNOWN_CLASS) >= 13  # of 16


def test_noise_and_a_cluttered_scene_are_unfamiliar_photos(wheel_run):
    rng = np.random.default_rng(13)
    images = [rng.uniform(0, 1, (32, 32, 3)).astype(np.float32) for _ in range(5)]
    images += [model_input(cluttered_scene(rng)) for _ in range(5)]
    assert verdicts(wheel_run, images) == [familiarity.UNFAMILIAR_PHOTO] * 10


def test_the_thresholds_accept_the_share_of_held_out_photos():
    rng = np.random.default_rng(0)
    typicality, similarity = rng.normal(size=10_000), rng.normal(size=10_000)
    found = familiarity.thresholds({"photo": typicality, "familiarity": similarity})
    accepted = (typicality >= found["photo"]) & (similarity >= found["familiarity"])
    assert abs(accepted.mean() - familiarity.ACCEPTED_SHARE) < 0.001
    [photo_share] = [share for check, share in CHECKS if check.name == "photo"]
    rejected_by_photo = (1 - familiarity.ACCEPTED_SHARE) * photo_share
    assert abs((typicality < found["photo"]).mean() - rejected_by_photo) < 0.0005


def test_fit_familiarity_refits_an_old_run_to_the_same_statistics(wheel_run, tmp_path, runner):
    old = shutil.copytree(wheel_run["run_dir"], tmp_path / "old")
    (old / FAMILIARITY_FILE).unlink()  # as a run trained before verdicts existed
    result = runner.invoke(main, ["predict", str(wheel_run["data"] / "Test" / "red"), "--model", str(old),
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    assert {(p["verdict"], p["familiarity"]) for p in json.loads(result.stdout)} == {("not available", None)}

    # Fitting reads Training alone: a copy of the data whose Test photos are all unreadable gives the same.
    data = shutil.copytree(wheel_run["data"], tmp_path / "data")
    for photo in (data / "Test").rglob("*.jpg"):
        photo.write_bytes(b"not an image")
    result = runner.invoke(main, ["fit-familiarity", str(old), "--data", str(data)])
    assert result.exit_code == 0, result.output
    refitted, trained = (familiarity.load(folder / FAMILIARITY_FILE) for folder in (old, wheel_run["run_dir"]))
    assert refitted.thresholds == trained.thresholds
    np.testing.assert_array_equal(refitted.states["familiarity"]["bank"], trained.states["familiarity"]["bank"])

    again = runner.invoke(main, ["fit-familiarity", str(old)])
    assert again.exit_code != 0 and "--force" in again.output and "Traceback" not in again.output


def test_statistics_of_another_model_are_refused_in_one_line(wheel_run, trained_run, tmp_path, runner):
    mixed = shutil.copytree(trained_run["run_dir"], tmp_path / "mixed")
    shutil.copyfile(wheel_run["run_dir"] / FAMILIARITY_FILE, mixed / FAMILIARITY_FILE)
    result = runner.invoke(main, ["predict", str(trained_run["data"] / "Test"), "--model", str(mixed)])
    assert result.exit_code != 0
    assert "fitted for another model" in result.output and len(result.output.strip().splitlines()) == 1
    refit = runner.invoke(main, ["fit-familiarity", str(mixed), "--force"])
    assert refit.exit_code == 0, refit.output
    assert runner.invoke(main, ["predict", str(trained_run["data"] / "Test"), "--model", str(mixed)]).exit_code == 0


def test_predict_gives_verdict_and_familiarity_in_every_format(trained_run, runner, tmp_path):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(noise)
    inputs = [str(trained_run["data"] / "Test" / "kiwi"), str(noise)]
    model = ["--model", str(trained_run["run_dir"])]

    records = json.loads(runner.invoke(main, ["predict", *inputs, *model, "--format", "json"]).stdout)
    assert len(records) == 6
    for record in records:
        assert list(record) == ["image", "verdict", "familiarity", "cut_out", "top"]
        assert record["verdict"] in familiarity.VERDICTS[:3]
        assert -1.0 <= record["familiarity"] <= 1.0
    assert records[-1]["verdict"] == familiarity.UNFAMILIAR_PHOTO

    rows = runner.invoke(main, ["predict", *inputs, *model, "--format", "csv"]).stdout.splitlines()
    assert rows[0] == "image,rank,class,probability,verdict,familiarity,cut_out"
    by_image = {}
    for row in rows[1:]:
        image, _, _, _, verdict, score, _ = row.split(",")
        by_image.setdefault(image, set()).add((verdict, score))
    assert len(by_image) == 6 and all(len(pairs) == 1 for pairs in by_image.values())  # every row carries them
    assert by_image[str(noise)] == {(records[-1]["verdict"], f"{records[-1]['familiarity']:.4f}")}

    table = runner.invoke(main, ["predict", str(noise), *model]).stdout
    assert f"verdict: unfamiliar photo, familiarity {records[-1]['familiarity']:.3f}" in table


def fruit_on_a_table(colour, rng, size=120):
    """A disc of ``colour`` on a brown wooden-looking table: a photo outside the studio."""
    yy, xx = np.mgrid[:size, :size]
    table = np.clip(np.array([125, 90, 55]) + rng.normal(0, 14, (size, size, 3)), 0, 255)
    table[::7] *= 0.8  # the boards' seams
    disc = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < (size * 0.22) ** 2
    table[disc] = np.asarray(colour) + rng.integers(-15, 16, size=(int(disc.sum()), 3))
    return np.clip(table, 0, 255).astype(np.uint8)


def test_an_unfamiliar_photo_is_answered_from_the_fruit_cut_out_of_it(wheel_run, tmp_path, runner):
    rng = np.random.default_rng(14)
    photos = []
    for name in ("red", "blue"):
        photos.append(tmp_path / f"{name}_on_table.jpg")
        Image.fromarray(fruit_on_a_table(WHEEL[name], rng)).save(photos[-1], quality=92)
    photos.append(tmp_path / "clutter.png")
    Image.fromarray(cluttered_scene(rng, 90)).save(photos[-1])
    model = ["--model", str(wheel_run["run_dir"]), "--format", "json"]

    whole = json.loads(runner.invoke(main, ["predict", *map(str, photos), *model, "--whole-photo"]).stdout)
    assert [p["verdict"] for p in whole] == [familiarity.UNFAMILIAR_PHOTO] * 3  # the table makes them unfamiliar
    assert not any(p["cut_out"] for p in whole)
    closer = json.loads(runner.invoke(main, ["predict", *map(str, photos), *model]).stdout)
    for record, name in zip(closer[:2], ("red", "blue")):
        assert record["cut_out"] and record["top"][0]["class"] == name  # guessed from the fruit alone ...
        assert record["verdict"] == familiarity.UNFAMILIAR_PHOTO  # ... and still not trusted
    assert [p["familiarity"] for p in closer] == [p["familiarity"] for p in whole]
    assert [p["top"][0]["class"] for p in whole[:2]] != ["red", "blue"]  # the table misled the whole photo
    assert closer[2]["verdict"] == familiarity.UNFAMILIAR_PHOTO

    result = runner.invoke(main, ["explain", str(photos[0]), "--model", str(wheel_run["run_dir"]), "--out",
                                  str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    assert "verdict: unfamiliar photo" in result.output and "from the fruit cut out of the photo" in result.output
    assert "predicted red" in result.output
    from fruitkeras import foreground
    from fruitkeras.data import read_rgb
    from fruitkeras.explain.report import explain_paths, ExplainOptions

    explained, _ = explain_paths(wheel_run["model"], {**wheel_run["metadata"]}, [photos[0]], ["gradient"],
                                 ExplainOptions(), tmp_path / "maps2")
    assert explained.cut_out == [True] and "(fruit cut out)" in explained.title(0)
    # What is drawn and explained (and what the page shows) is the cut-out
    np.testing.assert_allclose(explained.images[0], model_input(foreground.cut_out(read_rgb(photos[0]))), atol=1e-6)


def test_the_verdict_pass_gives_the_models_own_probabilities(wheel_run, tmp_path):
    """``look_closer`` takes the class probabilities from the verdict's forward pass, and runs only the cut-outs
    again: the answer must be what the whole model says of the image it answers from."""
    from fruitkeras.forward import class_probabilities
    from fruitkeras.prediction import look_closer

    rng = np.random.default_rng(15)
    photos = [tmp_path / "on_table.jpg", tmp_path / "studio.png"]
    Image.fromarray(fruit_on_a_table(WHEEL["green"], rng)).save(photos[0], quality=92)
    Image.fromarray(draw_fruit(WHEEL["cyan"], rng)).save(photos[1])
    images = np.stack([model_input(np.asarray(Image.open(photo).convert("RGB"))) for photo in photos])
    answered, probabilities, judged, cut = look_closer(wheel_run["model"], wheel_run["familiarity"], images, photos)
    assert cut == [True, False] and [v for v, _ in judged] == [familiarity.UNFAMILIAR_PHOTO, familiarity.KNOWN]
    np.testing.assert_allclose(probabilities, class_probabilities(wheel_run["model"], answered), atol=1e-5)
    assert not np.allclose(probabilities[0], class_probabilities(wheel_run["model"], images[:1])[0], atol=1e-3)  # the cut-out's


def test_explain_names_the_verdict_in_the_terminal_and_the_figure(trained_run, runner, tmp_path):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(noise)
    result = runner.invoke(main, ["explain", str(noise), "--model", str(trained_run["run_dir"]), "--out",
                                  str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    assert "verdict: unfamiliar photo (familiarity" in result.output

    from fruitkeras.explain.report import explain_images, ExplainOptions
    from fruitkeras.runs import load_model

    model, metadata = load_model(trained_run["model"])
    image = np.asarray(Image.open(noise).resize((32, 32)), dtype=np.float32)[None] / 255
    explained = explain_images(model, metadata, image, [noise], ["gradient"], ExplainOptions())
    assert "[unfamiliar photo, familiarity" in explained.title(0)


@pytest.mark.parametrize("content", [b"junk", None])
def test_a_damaged_familiarity_file_is_a_one_line_error(trained_run, tmp_path, runner, content):
    run = shutil.copytree(trained_run["run_dir"], tmp_path / "run")
    stored = (run / FAMILIARITY_FILE).read_bytes()
    (run / FAMILIARITY_FILE).write_bytes(content if content is not None else stored[: len(stored) // 2])
    result = runner.invoke(main, ["predict", str(trained_run["data"] / "Test" / "kiwi"), "--model", str(run)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "not a readable familiarity file" in result.output and "fit-familiarity" in result.output
    # Commands that give no verdict do not read the file: eval works, and the page serves without verdicts.
    evaluated = runner.invoke(main, ["eval", str(run), "--data", str(trained_run["data"]), "--out", str(tmp_path / "e")])
    assert evaluated.exit_code == 0, evaluated.output
    from fruitkeras.page_service import Inspection

    page = Inspection(run / "model.keras", trained_run["data"])
    assert "not a readable familiarity file" in page.familiarity_problem
    assert page.metadata["familiarity"] is None
    refit = runner.invoke(main, ["fit-familiarity", str(run), "--data", str(trained_run["data"]), "--force"])
    assert refit.exit_code == 0, refit.output
    assert runner.invoke(main, ["predict", str(trained_run["data"] / "Test" / "kiwi"), "--model", str(run)]).exit_code == 0


LOUDEST_MODULE = """
import numpy as np

from fruitkeras.verdict_checks.words import UNKNOWN_CLASS


class Loudest:
    name = "loudest"
    label = "loudest block summary"
    rejects_as = UNKNOWN_CLASS

    def fit(self, summaries, features):
        return {"top": np.abs(summaries).max(axis=0)}

    def score(self, state, summaries, features):
        return -np.abs(summaries).max(axis=1)

    def fits(self, state, summaries, features):
        return summaries.shape[1] == len(state["top"])

    def stored(self, state):
        return dict(state)

    def restored(self, arrays):
        return dict(arrays)
"""
USE_THE_TEST = """
import json, sys
import numpy as np
from click.testing import CliRunner
from fruitkeras import familiarity
from fruitkeras.cli import main
from fruitkeras.verdict_checks import CHECKS
runner = CliRunner()
fitted = runner.invoke(main, ["fit-familiarity", sys.argv[1], "--force"])
with np.load(sys.argv[1] + "/familiarity.npz") as stored:
    keys = sorted(stored.files)
answered = runner.invoke(main, ["predict", sys.argv[2], "--model", sys.argv[1], "--format", "json"])
loaded = familiarity.load(sys.argv[1] + "/familiarity.npz")
only_it_fails = loaded.verdicts_of({"loudest": [-np.inf], "photo": [np.inf], "familiarity": [np.inf]})
print(json.dumps({"fitted": [fitted.exit_code, fitted.output], "keys": keys, "answered": answered.exit_code,
                  "verdicts": [p["verdict"] for p in json.loads(answered.stdout)], "only_it_fails": only_it_fails,
                  "labels": [check.label for check, _ in CHECKS], "thresholds": sorted(loaded.thresholds)}))
"""


def test_adding_a_verdict_test_is_one_module_and_one_registry_line(trained_run, tmp_path):
    """A copy of the package with one new test module and one line in ``verdict_checks.ENTRIES``: fit-familiarity
    fits and stores it, predict answers with it, the verdict it gives when it alone fails is its own, and the
    open-set benchmark's rows (the tests' labels) list it."""
    import os
    import subprocess
    import sys

    from conftest import REPO, copy_run

    package = shutil.copytree(REPO / "fruitkeras", tmp_path / "copy" / "fruitkeras",
                              ignore=shutil.ignore_patterns("__pycache__"))
    (package / "verdict_checks" / "loudest.py").write_text(LOUDEST_MODULE)
    registry = (package / "verdict_checks" / "__init__.py").read_text()
    line = '    ("photo_typicality:PhotoTypicality", 0.2),\n'
    assert line in registry
    (package / "verdict_checks" / "__init__.py").write_text(
        registry.replace(line, line + '    ("loudest:Loudest", 0.3),\n'))
    run = copy_run(trained_run["run_dir"], tmp_path / "run")
    result = subprocess.run([sys.executable, "-c", USE_THE_TEST, str(run), str(trained_run["data"] / "Test")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path / "copy"), PYTHONSAFEPATH="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["fitted"][0] == 0, found["fitted"][1]
    assert {"loudest.top", "loudest.threshold", "photo.threshold", "familiarity.bank"} <= set(found["keys"])
    assert found["answered"] == 0 and len(found["verdicts"]) == 15
    assert found["only_it_fails"] == [familiarity.UNKNOWN_CLASS]
    assert "loudest block summary" in found["labels"] and found["thresholds"] == ["familiarity", "loudest", "photo"]
