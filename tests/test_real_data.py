"""The shipped model, on real Fruits-360 photos and on the bundled samples.

The 77-class set is found through $FRUITKERAS_DATA (when it names that set),
else ../shared/data/fruits-360-77class beside the repository; the tests that
need it are skipped, saying which variable to set, where neither exists.
The others need only the repository.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from fruitkeras import data as datalib
from fruitkeras.cli import main
from fruitkeras.explain.gradient import gradient_saliency
from fruitkeras.explain.integrated_gradients import integrated_gradients
from fruitkeras.explain.occlusion import occlusion
from fruitkeras.explain.occlusion import positions_touching
from fruitkeras.explain.class_scores import image_losses, scores_from
from fruitkeras.runs import load_model

REPO = Path(__file__).resolve().parent.parent
SHIPPED_RUN = REPO / "runs" / "fruits77-vgg_small"


def find_benchmark_data():
    """The 77-class set: $FRUITKERAS_DATA when its Training/ has the shipped model's classes, else beside the repo."""
    import os

    classes = json.loads((SHIPPED_RUN / "run.json").read_text())["class_names"]
    for candidate in (os.environ.get(datalib.DATA_ENV), REPO.parent / "shared" / "data" / "fruits-360-77class"):
        if candidate and (Path(candidate) / "Training").is_dir():
            if sorted(p.name for p in (Path(candidate) / "Training").iterdir() if p.is_dir()) == sorted(classes):
                return Path(candidate)
    return None


REAL_DATA = find_benchmark_data()
needs_data = pytest.mark.skipif(REAL_DATA is None, reason=(
    f"the 77-class Fruits-360 set was not found: set {datalib.DATA_ENV} to its folder (the one holding Training/ "
    "and Test/) or put it at ../shared/data/fruits-360-77class"))


@needs_data
def test_shipped_model_reaches_99_5_percent_through_fruitkeras_eval(runner, tmp_path):
    result = runner.invoke(main, ["eval", str(SHIPPED_RUN), "--data", str(REAL_DATA), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "test_metrics.json").read_text())
    assert metrics["images"] == 12231 and metrics["batch_norm"] == "moving statistics"
    assert metrics["accuracy"] >= 0.995, f"test accuracy {metrics['accuracy']:.4f}"
    # The log's last Test figure is this model's: the same photos, the same answers.
    import pandas as pd

    logged = pd.read_csv(SHIPPED_RUN / "history.csv")["test_accuracy"].iloc[-1]
    assert metrics["accuracy"] == pytest.approx(logged, abs=1e-6)
    assert f"test accuracy: {metrics['accuracy']:.4f} (" in result.output


def test_runs_reads_the_shipped_log_as_a_finished_run_with_its_last_test_accuracy(runner, monkeypatch):
    """``fruitkeras runs`` in the checkout: the shipped run, finished after every epoch its log holds, with the
    Test accuracy of the log's last row (the figure the examiner is shown)."""
    import pandas as pd

    history = pd.read_csv(SHIPPED_RUN / "history.csv")
    assert history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert history["test_accuracy"].notna().all() and history["timestamp"].notna().all()
    last_three = history["test_accuracy"].iloc[-3:]
    assert last_three.max() - last_three.min() <= 0.005
    monkeypatch.chdir(REPO)
    result = runner.invoke(main, ["runs"])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if line.startswith(SHIPPED_RUN.name)]
    assert f"{len(history)}/{len(history)}" in row and "finished" in row
    assert f"{history['test_accuracy'].iloc[-1]:.4f}" in row


@needs_data
def test_both_explanation_methods_on_a_real_photo_point_at_the_fruit():
    model, metadata = load_model(SHIPPED_RUN / "model.keras")
    path = sorted((REAL_DATA / "Test" / "Mango Red").iterdir())[0]
    image = datalib.load_image(path, metadata["input_size"])[None]
    label = [metadata["class_names"].index("Mango Red")]

    saliency = gradient_saliency(model, image, label)[0]
    heatmap = occlusion(model, image, label, patch=10)[0]
    for result in (saliency, heatmap):
        assert result.shape == (100, 100) and np.isfinite(result).all()

    fruit = image[0].min(axis=-1) < 0.9  # the non-white pixels
    touches_fruit = positions_touching(fruit, 10)
    strongest = heatmap >= np.quantile(heatmap, 0.99)
    assert touches_fruit[strongest].all(), "the strongest occlusion positions must hide some fruit"
    # A patch on pure background changes little (white on white), hiding fruit does.
    base = image_losses(model, image, label)[0]
    assert np.median(np.abs(heatmap[~touches_fruit] - base)) < 0.05 * base + 1e-6
    assert heatmap.max() > 1.05 * base
    assert saliency[fruit].mean() > 2 * saliency[~touches_fruit].mean()


def test_integrated_gradients_completeness_on_the_shipped_model():
    """ReLU kinks make the path integral harder than on a smooth network: on the
    twelve samples 64 steps gave 0.02-2.1%, 128 steps at most 1.0%."""
    model, metadata = load_model(SHIPPED_RUN / "model.keras")
    images = np.stack([datalib.load_image(path, metadata["input_size"]) for path in sorted((REPO / "samples").glob("*.jpg"))[:3]])
    score = scores_from(model)
    predicted = np.asarray(score(images)).argmax(axis=1)
    maps = integrated_gradients(model, images, predicted, steps=128)
    change = np.asarray(score(images))[np.arange(3), predicted] - np.asarray(score(np.ones_like(images[:1])))[0, predicted]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), change, rtol=0.015)
