"""Faithfulness metrics: rank correlation, deletion/insertion curves, randomisation check."""

import re

import keras
import numpy as np
import pytest

from fruitkeras.cli import main
from fruitkeras.data import load_image
from fruitkeras.explain.gradient import gradient_saliency
from fruitkeras.explain.faithfulness import (deletion_insertion, importance_order, randomisation_correlations,
                                             randomised_copy, spearman, weighted_layers)
from fruitkeras.explain.registry import METHOD, NAMES, ExplainOptions
from fruitkeras.layers import BatchNorm
from fruitkeras.runs import load_model


def test_spearman_by_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.exp(a)) == pytest.approx(1.0)  # ranks only
    # ties get average ranks: x ranks 1, 2.5, 2.5, 4; y ranks 1, 2, 3, 4 -> rho = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5.0))
    assert np.isnan(spearman(np.ones(4), [1, 2, 3, 4]))  # a constant map has no ranks: undefined, never 0


def corner_model():
    """Class 1's logit grows with the darkness of the top-left 2x2 corner; nothing else matters."""
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    kernel = np.zeros((48, 2), np.float32)
    corner = np.zeros((4, 4, 3), bool)
    corner[:2, :2] = True
    kernel[corner.reshape(-1), 1] = -3.0
    model.layers[-1].kernel.assign(kernel)
    model.layers[-1].bias.assign([0.0, 9.0])
    return model


def test_a_map_on_the_evidence_beats_one_elsewhere():
    model = corner_model()
    image = np.zeros((1, 4, 4, 3), np.float32)  # dark everywhere: the corner says class 1
    right = np.zeros((1, 4, 4))
    right[0, :2, :2] = 1.0
    wrong = 1.0 - right
    (del_right, ins_right, curve, _), = deletion_insertion(model, image, right, [1], steps=4)
    (del_wrong, ins_wrong, _, _), = deletion_insertion(model, image, wrong, [1], steps=4)
    assert del_right < del_wrong and ins_right > ins_wrong
    assert curve[0] == pytest.approx(float(model(image)[0, 1]), rel=1e-5)  # starts at the photo
    assert curve[-1] == pytest.approx(float(model(np.ones_like(image))[0, 1]), rel=1e-5)  # ends all white


def test_randomisation_fails_a_method_that_ignores_the_model_and_passes_the_gradient():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    images = np.random.default_rng(1).random((3, 8, 8, 3)).astype(np.float32)

    def brightness(model, images, labels=None):  # a "map" that never looks at the model
        return images.mean(axis=-1)

    ignoring = randomisation_correlations(model, brightness, images, [0, 1, 2])
    np.testing.assert_allclose(ignoring[1], 1.0)
    np.testing.assert_allclose(ignoring[None], 1.0)
    gradient = randomisation_correlations(model, gradient_saliency, images, [0, 1, 2])
    assert np.mean(gradient[None]) < 0.9


def test_a_constant_map_never_passes_the_randomisation_check():
    from fruitkeras.explain.report import Faithfulness, correlation_text, faithfulness_lines

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    images = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)

    def flat(model, images, labels=None):  # says nothing about any pixel
        return np.zeros(images.shape[:3])

    correlations = randomisation_correlations(model, flat, images, [0, 1])
    assert np.isnan(correlations[1]).all() and np.isnan(correlations[None]).all()
    assert correlation_text(correlations[1][0]) == "undefined (a constant map)"

    class Explained:
        paths = ["a.png"]

    line = faithfulness_lines(Explained, {"flat": [Faithfulness(0.1, 0.2, correlations[1][0], -0.25)]})[1]
    assert "randomised top undefined (a constant map) / all -0.25" in line


def test_ties_in_deletion_are_broken_all_over_the_image():
    """A flat region is removed at random places, not row by row from its top-left corner."""
    flat = np.zeros((20, 20))
    first = importance_order(flat, np.random.default_rng(0))[:40]  # the first tenth deleted
    rows = first // 20
    assert rows.min() < 5 and rows.max() > 15, rows
    distinct = np.random.default_rng(2).random((20, 20))
    np.testing.assert_array_equal(importance_order(distinct, np.random.default_rng(0)),
                                  np.argsort(-distinct.reshape(-1)))
    # Within a tie the order is drawn, and the same seed draws it again.
    model = corner_model()
    image = np.zeros((1, 4, 4, 3), np.float32)
    once, again = (deletion_insertion(model, image, np.zeros((1, 4, 4)), [1], steps=4, seed=3)[0][:2]
                   for _ in range(2))
    assert once == again


def test_randomised_copy_resets_batch_norm_statistics():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3, use_bias=False), BatchNorm(),
                              keras.layers.Flatten(), keras.layers.Dense(2), BatchNorm()])
    for layer in (model.layers[1], model.layers[4]):
        layer.moving_mean.assign(np.full(tuple(layer.moving_mean.shape), 3.0, np.float32))
        layer.moving_variance.assign(np.full(tuple(layer.moving_variance.shape), 7.0, np.float32))
    top = randomised_copy(model, top_layers=2)  # the last batch norm and the dense layer
    np.testing.assert_array_equal(top.layers[4].moving_mean, 0.0)
    np.testing.assert_array_equal(top.layers[4].moving_variance, 1.0)
    np.testing.assert_array_equal(top.layers[1].moving_mean, 3.0)  # below the randomised layers: as trained
    everything = randomised_copy(model, top_layers=len(weighted_layers(model)))
    for layer in (everything.layers[1], everything.layers[4]):
        np.testing.assert_array_equal(layer.moving_mean, 0.0)
        np.testing.assert_array_equal(layer.moving_variance, 1.0)
    np.testing.assert_array_equal(model.layers[1].moving_variance, 7.0)  # the original is untouched


def test_randomised_copy_changes_only_the_top_layers():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(3), keras.layers.Dense(2)])
    original_top = np.asarray(model.layers[2].kernel).copy()
    copy = randomised_copy(model, top_layers=1)
    first, middle, top = weighted_layers(copy)
    np.testing.assert_array_equal(first.kernel, model.layers[0].kernel)
    np.testing.assert_array_equal(middle.kernel, model.layers[1].kernel)
    assert not np.allclose(top.kernel, model.layers[2].kernel)
    np.testing.assert_array_equal(model.layers[2].kernel, original_top)  # the original is untouched


def test_cli_metrics_scores_every_registered_methods_map_with_that_methods_options(trained_run, runner, tmp_path):
    """The printed numbers are the metrics of the written maps, recomputed here from the .npy files with the
    options given on the command line, so each method (SmoothGrad's wrapped one included) got its own."""
    image = sorted((trained_run["data"] / "Test" / "plum").iterdir())[0]
    result = runner.invoke(main, ["explain", str(image), "--model", str(trained_run["run_dir"]), "--method", "all",
                                  "--metrics", "--samples", "2", "--patch", "5", "--stride", "4", "--whole-photo",
                                  "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    model, metadata = load_model(trained_run["model"])
    photo = load_image(image, (32, 32))[None]
    label = int(model.predict(photo, verbose=0).argmax())
    options = ExplainOptions(samples=2, patch=5, stride=4)
    scored = []
    for line in result.output.splitlines():
        found = re.search(r"^  (\w+) .*: deletion ([0-9.]+)  insertion ([0-9.]+)  randomised top (.+) / all (.+)$",
                          line)
        if not found:
            continue
        method = found[1]
        scored.append(method)
        heatmap = np.load(next(tmp_path.glob(f"{image.stem}_{method}-*.npy")))
        (deletion, insertion, _, _), = deletion_insertion(model, photo, heatmap[None], [label], fill=(1.0, 1.0, 1.0))
        assert float(found[2]) == pytest.approx(deletion, abs=6e-4), method
        assert float(found[3]) == pytest.approx(insertion, abs=6e-4), method
        arguments = METHOD[method].options(options, metadata.get("mean_colour"))
        arguments.pop("progress", None), arguments.pop("xla", None)  # as --metrics runs them
        correlations = randomisation_correlations(model, METHOD[method].load(), photo, [label], maps=heatmap[None],
                                                  **arguments)
        for printed, expected in ((found[4], correlations[1][0]), (found[5], correlations[None][0])):
            if np.isnan(expected):
                assert printed.startswith("undefined"), (method, line)
            else:
                assert float(printed) == pytest.approx(expected, abs=0.0051), (method, line)
    assert scored == list(NAMES)
