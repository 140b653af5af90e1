"""Outlier exposure: chimeras of two fruits, labelled as no class and trained towards uniform."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import RECIPE_TINY
from fruitkeras.augmentation import batch_key
from fruitkeras.losses import SmoothedSparseCrossEntropy
from fruitkeras.outliers import CUT_RANGE, NO_CLASS, make_outlier_exposure
from fruitkeras.training import train


def flat_photos(labels, size=20):
    """One flat colour per photo, distinct for every photo, so each pixel says where it came from."""
    values = (np.arange(len(labels), dtype=np.float32) + 1) / (len(labels) + 1)
    return np.broadcast_to(values[:, None, None, None], (len(labels), size, size, 3)).copy()


def test_no_share_makes_no_outliers():
    assert make_outlier_exposure(0.0) is None


def test_outliers_are_two_photos_of_other_classes_cut_together_and_relabelled():
    labels = np.array([0, 1, 1, 2, 0, 3, 3, 1] * 8, dtype=np.int32)
    photos = flat_photos(labels)
    expose = make_outlier_exposure(0.5)
    seen_across = seen_down = 0
    for batch in range(4):
        images, new_labels = (t.numpy() for t in expose(tf.constant(photos), tf.constant(labels),
                                                         batch_key(0, 0, batch)))
        partner = np.roll(np.arange(len(labels)), 1)
        chosen = new_labels == NO_CLASS
        assert 0 < chosen.sum() < len(labels)
        # Never two photos of one class; the others keep their labels and pixels.
        assert not chosen[labels == labels[partner]].any()
        np.testing.assert_array_equal(new_labels[~chosen], labels[~chosen])
        np.testing.assert_array_equal(images[~chosen], photos[~chosen])
        for row in np.flatnonzero(chosen):
            own = np.isclose(images[row, ..., 0], photos[row, 0, 0, 0])
            other = np.isclose(images[row, ..., 0], photos[partner[row], 0, 0, 0])
            assert (own | other).all()
            share = other.mean()
            assert CUT_RANGE[0] - 0.06 <= 1 - share <= CUT_RANGE[1] + 0.06
            # The near side is the photo's own, the far side the partner's: a straight cut across or down.
            if own[0].all():
                seen_across += 1
                assert other[-1].all()
            else:
                seen_down += 1
                assert own[:, 0].all() and other[:, -1].all()
    assert seen_across and seen_down


def test_outliers_are_drawn_from_the_key():
    labels = tf.constant(np.arange(32) % 5, tf.int32)
    photos = tf.constant(flat_photos(np.arange(32)))
    expose = make_outlier_exposure(0.3)
    first, again, other = (expose(photos, labels, batch_key(seed, 1, 2))[1].numpy() for seed in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_loss_trains_an_outlier_towards_the_uniform_distribution():
    logits = np.random.default_rng(1).normal(size=(3, 4))
    probabilities = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    labels = np.array([NO_CLASS, NO_CLASS, NO_CLASS])
    for smoothing in (0.0, 0.1):
        loss = SmoothedSparseCrossEntropy(4, smoothing)(labels, probabilities)
        assert float(loss) == pytest.approx(-np.log(probabilities).mean(), rel=1e-5)
    # A uniform answer is what it asks for: nothing to learn there beyond log 4.
    assert float(SmoothedSparseCrossEntropy(4, 0.1)(labels, np.full((3, 4), 0.25, np.float32))) == \
        pytest.approx(np.log(4), rel=1e-5)


def test_training_with_outliers_and_type_loss_keeps_the_same_history_for_the_same_seed(architecture_file,
                                                                                         image_folders, tmp_path):
    recipe = dict(RECIPE_TINY, training=dict(RECIPE_TINY["training"], outlier_exposure=0.3, type_loss=0.5))
    path = architecture_file(recipe, "outliers.json")
    histories = []
    for name in ("a", "b"):
        train(path, data=str(image_folders), run_dir=tmp_path / name, seed=3, verbose=0)
        histories.append(pd.read_csv(tmp_path / name / "history.csv").drop(columns=["timestamp", "epoch_seconds"]))
    pd.testing.assert_frame_equal(*histories, check_exact=True)
    plain = tmp_path / "plain"
    train(architecture_file(RECIPE_TINY, "plain.json"), data=str(image_folders), run_dir=plain, seed=3, verbose=0)
    # The outliers and the type term changed what was optimised.
    assert not np.allclose(histories[0]["loss"], pd.read_csv(plain / "history.csv")["loss"])
