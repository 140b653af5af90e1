"""Test-set evaluation: accuracy, loss, per-class accuracy, confusion matrix."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fruitkeras import data as datalib
from fruitkeras.decoded_cache import decode_cached
from fruitkeras.errors import FruitkerasError
from fruitkeras.run_folder import EVALUATIONS_DIR, RUN_FILE, report_files


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


def evaluate_run(model_path, data=None, out=None, batch_size=64, bn_train_mode=False, echo=print, distribute="none",
                 devices=None):
    """The ``eval`` command: evaluate a model file on Test/, print the results, write the reports.

    ``distribute``: "none" or "mirrored" (over ``devices``; ``fruitkeras.distribute``).
    """
    from fruitkeras import distribute as distribution
    from fruitkeras.runs import load_model

    strategy = distribution.make_strategy(distribute, devices)
    data_root = datalib.resolve_data_dir(data)
    redirected = False
    if out is None:
        out = default_report_dir(model_path, data_root)
        redirected = out != Path(model_path).parent
    check_writable(Path(out))  # before the work, not after it
    with distribution.scope(strategy):
        model, metadata = load_model(model_path, familiarity=False)  # eval gives no verdicts
    if strategy is not None and batch_size % strategy.num_replicas_in_sync:
        raise FruitkerasError(f"--batch-size {batch_size} does not split evenly over "
                              f"{strategy.num_replicas_in_sync} replicas")
    result = evaluate(model, metadata, data_root, batch_size=batch_size, bn_train_mode=bn_train_mode,
                      distributed=strategy is not None)
    correct = int((result.predictions == result.labels).sum())
    echo(f"model: {model_path}")
    echo(f"test accuracy: {result.accuracy:.4f} ({correct}/{len(result.labels)})  loss: {result.loss:.4f}"
         + ("  [batch statistics]" if bn_train_mode else ""))
    table = result.per_class()
    width = max(len(name) for name in table["class"])
    for row in table.itertuples():
        echo(f"  {row[1]:<{width}}  {row.accuracy:.4f}  ({row.correct}/{row.images})")
    confusions = top_confusions(result.confusion, result.class_names, 5)
    if confusions:
        echo("most frequent confusions: " + "; ".join(f"{t} -> {p} ({n})" for t, p, n in confusions))
    if redirected:  # said once the evaluation worked: a refusal stays one line
        echo(f"note: {data_root} is not the data this run was trained on, so its recorded result stays as it is; "
             f"the reports go to {out}")
    for path in write_report(result, out, model_path, data_root, bn_train_mode):
        echo(f"wrote {path}")
    return result


def default_report_dir(model_path, data_root):
    """Where ``eval`` writes without --out: the model's folder, unless that is a run trained on other data.

    A run folder's reports are its recorded proof, shown by ``runs`` and the page: only an evaluation on the
    data the run records rewrites them.  Others go to ``evaluations/<run>-on-<data folder>/``.
    """
    folder = Path(model_path).parent
    try:
        recorded = json.loads((folder / RUN_FILE).read_text()).get("data")
    except (OSError, ValueError):
        return folder  # a model file outside a run folder: nothing recorded to protect
    if recorded and Path(recorded).resolve() == Path(data_root).resolve():
        return folder
    return EVALUATIONS_DIR / f"{folder.name}-on-{Path(data_root).resolve().name}"


def check_writable(out_dir):
    """A one-line error, before any evaluation, when the reports could not be written into ``out_dir``."""
    import os

    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise FruitkerasError(f"cannot write the reports into {out_dir} (not writable); choose a folder with --out")


def write_report(evaluation, out_dir, model_path, data_root, bn_train_mode=False):
    """Metrics JSON, per-class CSV, confusion matrix CSV + PNG and the mistakes CSV; returns their paths."""
    import pandas as pd

    from fruitkeras.figures import plot_confusion

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = report_files(out_dir, bn_train_mode)
    metrics = {
        "model": str(model_path),
        "data": str(data_root),
        "images": int(len(evaluation.labels)),
        "accuracy": evaluation.accuracy,
        "loss": evaluation.loss,
        "batch_norm": "batch statistics" if bn_train_mode else "moving statistics",
    }
    paths[0].write_text(json.dumps(metrics, indent=2) + "\n")
    evaluation.per_class().to_csv(paths[1], index=False, float_format="%.4f")
    names = evaluation.class_names
    pd.DataFrame(evaluation.confusion, index=pd.Index(names, name="true \\ predicted"), columns=names).to_csv(paths[2])
    plot_confusion(evaluation.confusion, names, top_confusions(evaluation.confusion, names, 15),
                   f"test accuracy {evaluation.accuracy:.4f} ({len(evaluation.labels)} images)", paths[3])
    evaluation.mistakes().to_csv(paths[4], index=False, float_format="%.4f")
    return paths
