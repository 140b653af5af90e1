"""The training loss: label smoothing and the fruit-type term (``fruitkeras.losses``)."""

import json

import keras
import numpy as np
import pytest

from conftest import TINY_ARCHITECTURE, make_image_folders
from fruitkeras.cli import main
from fruitkeras.data import fruit_types
from fruitkeras.losses import SmoothedSparseCrossEntropy
from fruitkeras.runs import load_model


def random_probabilities(rows, classes, seed=0):
    logits = np.random.default_rng(seed).normal(size=(rows, classes))
    return (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)


def test_fruit_types_group_varieties_by_the_first_word_of_their_names():
    types, names = fruit_types(["Apple Braeburn", "Banana", "Apple Red 1", "Cherry Wax Black", "Banana Lady Finger",
                                "Cherry 1"])
    assert names == ["Apple", "Banana", "Cherry"]
    assert types == [0, 1, 0, 2, 1, 2]


def test_type_term_adds_the_cross_entropy_of_the_summed_type_probability():
    probabilities = random_probabilities(6, 5)
    labels = np.array([0, 1, 2, 3, 4, 2])
    type_of_class = [0, 0, 1, 1, 2]
    plain = SmoothedSparseCrossEntropy(5, 0.1)
    typed = SmoothedSparseCrossEntropy(5, 0.1, type_of_class, 0.5)
    # The probability of the photo's type: its classes' probabilities summed.
    members = np.array(type_of_class)[None, :] == np.array(type_of_class)[labels][:, None]
    type_loss = -np.log((probabilities * members).sum(1)).mean()
    assert float(typed(labels, probabilities)) == pytest.approx(float(plain(labels, probabilities)) + 0.5 * type_loss,
                                                                rel=1e-5)


def test_type_term_costs_less_for_a_confusion_within_the_type():
    """Two predictions equally wrong for the class: the one that stays in the right type is cheaper."""
    loss = SmoothedSparseCrossEntropy(4, 0.0, [0, 0, 1, 1], 1.0)
    within = np.array([[0.2, 0.7, 0.05, 0.05]], np.float32)  # class 0 true, class 1 (same type) chosen
    across = np.array([[0.2, 0.05, 0.7, 0.05]], np.float32)  # class 2 (other type) chosen
    assert float(loss([0], within)) < float(loss([0], across))
    assert float(SmoothedSparseCrossEntropy(4, 0.0)([0], within)) == \
        pytest.approx(float(SmoothedSparseCrossEntropy(4, 0.0)([0], across)))


def test_type_term_needs_a_type_for_every_class():
    with pytest.raises(ValueError, match="one type number per class"):
        SmoothedSparseCrossEntropy(4, 0.1, [0, 0, 1], 1.0)


def test_training_with_type_loss_compiles_the_types_of_its_classes(tmp_path, runner):
    classes = {"Apple Red": (200, 20, 30), "Apple Golden": (220, 200, 40), "Kiwi": (90, 160, 40)}
    data = make_image_folders(tmp_path / "fruits", train_per_class=6, test_per_class=2, classes=classes)
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir",
                                  str(tmp_path / "run"), "--epochs", "1", "--set", "training.type_loss=0.5",
                                  "--quiet"])
    assert result.exit_code == 0, result.output
    _, meta = load_model(tmp_path / "run" / "model.keras")
    loss = keras.models.load_model(tmp_path / "run" / "model.keras").loss  # compiled: the loss trained with
    assert loss.type_weight == 0.5
    expected_types, _ = fruit_types(meta["class_names"])
    assert loss.type_of_class == expected_types and len(set(expected_types)) == 2
    assert json.loads((tmp_path / "run" / "run.json").read_text())["overrides"] == ["training.type_loss=0.5"]
