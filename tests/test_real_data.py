"""The shipped model on real Fruits-360 photos (../shared/data beside the repository).

Skipped, with the reason shown, where that folder is absent.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fruitkeras import data as datalib
from fruitkeras.cli import main
from fruitkeras.explain import gradient_saliency, integrated_gradients, occlusion
from fruitkeras.explain.occlusion import positions_touching
from fruitkeras.explain.targets import losses, scores_from
from fruitkeras.runs import load_model

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = REPO.parent / "shared" / "data" / "fruits-360-77class"
SHIPPED_RUN = REPO / "runs" / "fruits77-vgg_small"

pytestmark = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real photos not found at {REAL_DATA}")


def test_shipped_model_reaches_99_percent_through_fruitkeras_eval(runner, tmp_path):
    result = runner.invoke(main, ["eval", str(SHIPPED_RUN), "--data", str(REAL_DATA), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "test_metrics.json").read_text())
    assert metrics["images"] == 12231 and metrics["batch_norm"] == "moving statistics"
    assert metrics["accuracy"] >= 0.99, f"test accuracy {metrics['accuracy']:.4f}"
    assert re.search(r"test accuracy: 0\.99[0-9]{2} \(", result.output)


def test_shipped_log_has_test_accuracy_for_every_epoch():
    import pandas as pd

    history = pd.read_csv(SHIPPED_RUN / "history.csv")
    assert history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert history["test_accuracy"].notna().all() and history["timestamp"].notna().all()
    last_three = history["test_accuracy"].iloc[-3:]
    assert last_three.max() - last_three.min() <= 0.005


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
    base = losses(model, image, label)[0]
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
