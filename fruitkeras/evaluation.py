"""Test-set evaluation: accuracy, loss, per-class accuracy, confusion matrix (the ``eval`` command and its
reports: ``fruitkeras.evaluation_report``)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fruitkeras import data as datalib
from fruitkeras.decoded_cache import decode_cached
from fruitkeras.errors import FruitkerasError


@dataclass
class Evaluation:
    class_names: list
    labels: np.ndarray  # true class per image, indexing class_names
    probabilities: np.ndarray  # (images, classes)
    paths: list = None  # the image files, when known

    def mistakes(self):
        """The misclassified images, most confident mistake first."""
        import pandas as pd

        predicted = self.predictions
        wrong = np.flatnonzero(predicted != self.labels)
        rows = pd.DataFrame({
            "image": [self.paths[i] if self.paths else i for i in wrong],
            "true": [self.class_names[self.labels[i]] for i in wrong],
            "predicted": [self.class_names[predicted[i]] for i in wrong],
            "probability_predicted": self.probabilities[wrong, predicted[wrong]],
            "probability_true": self.probabilities[wrong, self.labels[wrong]],
        })
        return rows.sort_values("probability_predicted", ascending=False, kind="stable").reset_index(drop=True)

    @property
    def predictions(self):
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self):
        return float(np.mean(self.predictions == self.labels))

    @property
    def loss(self):
        """Mean categorical cross-entropy."""
        chosen = self.probabilities[np.arange(len(self.labels)), self.labels]
        return float(np.mean(-np.log(np.clip(chosen, 1e-7, 1.0))))

    @property
    def confusion(self):
        """Counts, rows = true class, columns = predicted class."""
        size = len(self.class_names)
        matrix = np.zeros((size, size), dtype=np.int64)
        np.add.at(matrix, (self.labels, self.predictions), 1)
        return matrix

    def per_class(self):
        import pandas as pd

        matrix = self.confusion
        images = matrix.sum(axis=1)
        correct = np.diag(matrix)
        return pd.DataFrame(
            {
                "class": self.class_names,
                "images": images,
                "correct": correct,
                "accuracy": np.where(images > 0, correct / np.maximum(images, 1), np.nan),
            }
        )


def predict_probabilities(model, dataset, distributed=False, batch_statistics=False):
    """Class probabilities for every batch of ``dataset`` (inference mode), with the labels.

    ``distributed``: the model was made in a strategy's scope; Keras's
    ``predict`` splits every batch over the strategy's replicas.
    ``batch_statistics``: batch norm normalises with each batch's own
    statistics (``fruitkeras.forward.run_layers``).
    """
    from fruitkeras.forward import probabilities_function

    if distributed:
        if batch_statistics:
            raise FruitkerasError("--bn-train-mode evaluates on one device; leave out --distribute")
        probabilities = model.predict(dataset.map(lambda images, _: images), verbose=0)
        return probabilities, np.concatenate([np.asarray(labels) for _, labels in dataset])

    predict = probabilities_function(model, batch_statistics)
    probabilities, labels = [], []
    for images, batch_labels in dataset:
        probabilities.append(predict(images).numpy())
        labels.append(np.asarray(batch_labels))
    return np.concatenate(probabilities), np.concatenate(labels)


def loss_and_accuracy(model, dataset):
    """Mean cross-entropy and accuracy over a dataset of (images, labels) batches."""
    probabilities, labels = predict_probabilities(model, dataset)
    result = Evaluation(list(range(probabilities.shape[1])), labels, probabilities)
    return result.loss, result.accuracy


def top_confusions(confusion, class_names, count=10):
    """The ``count`` largest off-diagonal cells as (true, predicted, images), largest first."""
    off = np.array(confusion, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:count]
    cells = [np.unravel_index(index, off.shape) for index in order]
    return [(class_names[t], class_names[p], int(off[t, p])) for t, p in cells if off[t, p] > 0]


def evaluate(model, metadata, data_root, batch_size=64, bn_train_mode=False, distributed=False):
    """Run the model over ``data_root/Test`` and collect its predictions.

    Test classes are matched to the model's outputs by name.  With
    ``bn_train_mode`` batch-norm layers use each batch's own statistics; the
    images are then shuffled so that a batch is not all one class.
    """
    class_names = metadata["class_names"]
    listed = datalib.scan_split(Path(data_root) / datalib.TEST_SPLIT)
    datalib.check_same_classes(class_names, listed.class_names, "the model", f"{data_root}/Test/")  # before decoding
    split = decode_cached(listed, tuple(metadata["input_size"]))
    datalib.report_skipped(split)
    datalib.relabel(split, class_names)
    order = np.arange(len(split))
    if bn_train_mode:
        order = np.random.default_rng(0).permutation(len(split))

    probabilities, labels = predict_probabilities(model, datalib.make_dataset(split, batch_size, rows=order),
                                                  distributed, batch_statistics=bn_train_mode)
    return Evaluation(class_names, labels, probabilities, [split.paths[i] for i in order])
