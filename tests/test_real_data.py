"""The shipped model on real Fruits-360 photos (../shared/data beside the repository).

Skipped, with the reason shown, where that folder is absent.
"""

from pathlib import Path

import numpy as np
import pytest

from fruitkeras import data as datalib
from fruitkeras.evaluation import evaluate
from fruitkeras.explain import gradient_saliency, occlusion
from fruitkeras.explain.occlusion import positions_touching
from fruitkeras.explain.targets import losses
from fruitkeras.runs import load_model

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = REPO.parent / "shared" / "data" / "fruits-360-4class"
SHIPPED_RUN = REPO / "runs" / "fruits4-vgg_small"

pytestmark = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real photos not found at {REAL_DATA}")


@pytest.fixture(scope="module")
def shipped():
    return load_model(SHIPPED_RUN / "model.keras")


def test_shipped_model_reaches_97_percent_on_the_real_test_split(shipped):
    model, metadata = shipped
    result = evaluate(model, metadata, REAL_DATA)
    assert len(result.labels) == 662
    assert result.accuracy >= 0.97, f"test accuracy {result.accuracy:.4f}"


def test_explanations_on_a_real_photo_point_at_the_fruit(shipped):
    model, metadata = shipped
    path = sorted((REAL_DATA / "Test" / "mango").iterdir())[0]
    image = datalib.load_image(path, metadata["input_size"])[None]
    label = [metadata["class_names"].index("mango")]

    saliency = gradient_saliency(model, image, label)[0]
    heatmap = occlusion(model, image, label, patch=10)[0]
    for result in (saliency, heatmap):
        assert result.shape == (100, 100) and np.isfinite(result).all()

    fruit = image[0].min(axis=-1) < 0.9  # the non-white pixels
    touches_fruit = positions_touching(fruit, 10)
    strongest = heatmap >= np.quantile(heatmap, 0.99)
    assert touches_fruit[strongest].all(), "the strongest occlusion positions must hide some fruit"
    # A patch on pure background changes nothing (white on white), hiding fruit does.
    base = losses(model, image, label)[0]
    np.testing.assert_allclose(heatmap[~touches_fruit], base, rtol=0.05)
    assert heatmap.max() > 1.05 * base
