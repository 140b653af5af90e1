"""The training loss: sparse cross-entropy with label smoothing (``fruitkeras.losses``)."""

import numpy as np
import pytest

from fruitkeras.losses import SmoothedSparseCrossEntropy


def random_probabilities(rows, classes, seed=0):
    logits = np.random.default_rng(seed).normal(size=(rows, classes))
    return (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)


def test_label_smoothing_by_hand():
    probabilities = random_probabilities(6, 5)
    labels = np.array([0, 1, 2, 3, 4, 2])
    targets = np.full((6, 5), 0.1 / 5)
    targets[np.arange(6), labels] += 0.9
    expected = -(targets * np.log(probabilities)).sum(1).mean()
    assert float(SmoothedSparseCrossEntropy(5, 0.1)(labels, probabilities)) == pytest.approx(expected, rel=1e-5)


def test_an_older_files_config_loads_and_the_removed_type_term_is_refused():
    """Models saved before the fruit-type term was removed carry its two keys, at zero."""
    config = {"num_classes": 5, "label_smoothing": 0.1, "type_of_class": None, "type_weight": 0.0}
    loss = SmoothedSparseCrossEntropy.from_config(config)
    assert loss.get_config()["label_smoothing"] == 0.1 and "type_weight" not in loss.get_config()
    with pytest.raises(ValueError, match="fruit-type loss term was removed"):
        SmoothedSparseCrossEntropy.from_config({**config, "type_of_class": [0, 0, 1, 1, 2], "type_weight": 0.5})
