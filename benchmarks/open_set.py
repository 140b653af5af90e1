"""Which photos does a model accept as one of its classes?  The verdict's methods compared, and the models measured.

Two tables, written to ``docs/open-set-measured.md`` (``docs/real-photos.md`` explains them):

1. **Methods**, on one model: for each score, its AUROC against the 77-class
   Test photos and the share of each set it accepts at the threshold that
   accepts 99% of Test.  The sets: ``unseen-classes-dev`` (Fruits-360 photos
   of 11 other classes), ``realworld-dev`` (real photos, of known fruit types
   and of no fruit) and three synthetic kinds made here from Test photos
   (uniform noise, 4x4 tiles shuffled, the fruit cut from its white
   background and laid on a procedural background at 60% size).  The last row
   is the shipped verdict at its own thresholds (fitted on Training only).
   Threshold at 99% of Test: this table uses Test to compare the methods on an
   equal footing; the shipped thresholds never see Test.
2. **Models**: Test accuracy, real-photo type-level top-1 and top-5, the share
   of real fruit photos accepted as ``known`` and their type-level precision,
   the shares of unseen-class and non-fruit photos accepted, training minutes.

The printed ratio: the unseen-class photos accepted at 99% Test acceptance by
the shipped familiarity over those accepted by max-softmax, the usual
baseline (lower is better).

Usage:
    python benchmarks/open_set.py --data ../shared/data/fruits-360-77class \
        --model runs/fruits77-vgg_small [--model OTHER_RUN ...] [--previous 9de8de5] [--models-only]
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SYNTHETIC = 200
TEST_ACCEPTED = 0.99


def auroc(inside, outside):
    """P(score of an inside photo > score of an outside one), ties counted half (Mann-Whitney)."""
    scores = np.concatenate([inside, outside])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # tied scores share their mean rank
    return (ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2) / (len(inside) * len(outside))


def folder_images(folder, size):
    from fruitkeras import data as datalib

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in datalib.IMAGE_SUFFIXES)
    return np.stack([datalib.load_image(p, size) for p in files]), files


def synthetic_sets(test_images, rng):
    """Noise, shuffled tiles and composited fruit, from a sample of Test photos ([0, 1] floats)."""
    height, width = test_images.shape[1:3]
    chosen = test_images[rng.choice(len(test_images), SYNTHETIC, replace=False)]
    noise = rng.uniform(0, 1, (SYNTHETIC, height, width, 3)).astype(np.float32)
    tiles = chosen[:, : height // 4 * 4, : width // 4 * 4]
    th, tw = tiles.shape[1] // 4, tiles.shape[2] // 4
    tiles = tiles.reshape(SYNTHETIC, 4, th, 4, tw, 3).transpose(0, 1, 3, 2, 4, 5).reshape(SYNTHETIC, 16, th, tw, 3)
    tiles = np.take_along_axis(tiles, np.stack([rng.permutation(16) for _ in range(SYNTHETIC)])[:, :, None, None, None], 1)
    scrambled = np.array(chosen)
    scrambled[:, : th * 4, : tw * 4] = tiles.reshape(SYNTHETIC, 4, 4, th, tw, 3).transpose(0, 1, 3, 2, 4, 5).reshape(
        SYNTHETIC, th * 4, tw * 4, 3)
    composited = np.empty_like(chosen)
    for index, image in enumerate(chosen):
        composited[index] = _composite(image, rng)
    return {"noise (synthetic)": noise, "shuffled tiles (synthetic)": scrambled,
            "fruit on a background (synthetic)": composited}


def _composite(image, rng):
    """The fruit (not-white pixels), shrunk to 60%, on a gradient of two random colours with noise."""
    from PIL import Image

    height, width = image.shape[:2]
    small = np.asarray(Image.fromarray((image * 255).astype(np.uint8)).resize((int(width * 0.6), int(height * 0.6)),
                                                                             Image.BILINEAR)) / 255.0
    ramp = np.linspace(0, 1, width)[None, :, None]
    background = rng.uniform(0, 1, 3) * (1 - ramp) + rng.uniform(0, 1, 3) * ramp
    background = np.clip(background + rng.normal(0, 0.05, (height, width, 3)), 0, 1)
    top, left = rng.integers(0, height - small.shape[0]), rng.integers(0, width - small.shape[1])
    patch = background[top : top + small.shape[0], left : left + small.shape[1]]
    fruit = small.min(axis=2, keepdims=True) < 0.9
    background[top : top + small.shape[0], left : left + small.shape[1]] = np.where(fruit, small, patch)
    return background.astype(np.float32)


def penultimate_and_logits(model, images, batch=256):
    """The penultimate features and the logits, as float64 for the scores' sums; the logits are explain's
    class scores (``scores_from``), the one place fruitkeras computes them."""
    import tensorflow as tf

    from fruitkeras.explain.class_scores import scores_from
    from fruitkeras.forward import in_batches, run_layers

    layers = list(model.layers)
    body = tf.function(lambda x: run_layers(layers[:-1], x))
    head = tf.function(scores_from(model, start=len(layers) - 1))
    features = in_batches(lambda x: body(tf.constant(x)), batch, images)
    logits = in_batches(lambda x: head(tf.constant(x)), batch, features)
    return features.astype(np.float64), logits.astype(np.float64)


def log_sum_exp(logits):
    top = logits.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))


def mahalanobis_fit(features, labels):
    from fruitkeras.verdict_checks.photo_typicality import gaussian

    means = np.stack([features[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    _, precision = gaussian(features - means[labels])
    return means, precision


def mahalanobis_score(features, means, precision):
    distances = [np.einsum("ij,jk,ik->i", features - m, precision, features - m) for m in means]
    return -np.min(distances, axis=0)


def outlier_exposure_head(inside, outside, steps=300, rate=0.5):
    """A logistic "one of my classes?" head on frozen penultimate features, trained on training features
    against synthetic outliers made from training photos (the training-side method, head only)."""
    mean, spread = inside.mean(axis=0), inside.std(axis=0) + 1e-6
    x = np.concatenate([(inside - mean) / spread, (outside - mean) / spread])
    y = np.concatenate([np.ones(len(inside)), np.zeros(len(outside))])
    weight = np.where(y == 1, 0.5 / len(inside), 0.5 / len(outside))
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        gradient = weight * (p - y)
        w -= rate * (x.T @ gradient + 1e-4 * w)
        b -= rate * gradient.sum()
    return lambda features: ((features - mean) / spread) @ w + b


def training_outliers(images, rng, count=3000):
    """Outliers for the head, from Training photos: two photos of any classes blended, 5x5 tiles shuffled."""
    first, second = (images[rng.choice(len(images), count)] for _ in range(2))
    blended = (first + second) / 2
    height, width = images.shape[1] // 5 * 5, images.shape[2] // 5 * 5
    th, tw = height // 5, width // 5
    tiles = first[:, :height, :width].reshape(count, 5, th, 5, tw, 3).transpose(0, 1, 3, 2, 4, 5).reshape(
        count, 25, th, tw, 3)
    tiles = np.take_along_axis(tiles, np.stack([rng.permutation(25) for _ in range(count)])[:, :, None, None, None], 1)
    shuffled = np.array(first)
    shuffled[:, :height, :width] = tiles.reshape(count, 5, 5, th, tw, 3).transpose(0, 1, 3, 2, 4, 5).reshape(
        count, height, width, 3)
    return np.concatenate([blended, shuffled]).astype(np.float32)


def type_tables(realworld):
    """({photo file name: fruit type}, {class: fruit type}) from realworld-dev's labels.tsv and types.tsv."""
    with open(realworld / "labels.tsv", newline="") as handle:
        photo_types = {row["file"]: row["type"] for row in csv.DictReader(handle, delimiter="\t")}
    with open(realworld / "types.tsv", newline="") as handle:
        class_types = {row["class"]: row["type"] for row in csv.DictReader(handle, delimiter="\t")}
    return photo_types, class_types


def training_minutes(run_dir):
    import pandas as pd

    history = Path(run_dir) / "history.csv"
    return float(pd.read_csv(history)["epoch_seconds"].sum() / 60) if history.exists() else float("nan")


def measure_model(run_dir, test, sets, realworld, data):
    """One row of the models table: real photos go through ``predict_images`` as ``fruitkeras predict`` sends them
    (an unfamiliar photo's classes guessed from the fruit cut out of it), and once as whole photos."""
    from fruitkeras.familiarity import KNOWN
    from fruitkeras.prediction import predict_images
    from fruitkeras.runs import load_model

    model, metadata = load_model(Path(run_dir) / "model.keras")
    if metadata["familiarity"] is None:
        subprocess.run([sys.executable, "-m", "fruitkeras.cli", "fit-familiarity", str(run_dir), "--data", str(data)],
                       check=True)
        model, metadata = load_model(Path(run_dir) / "model.keras")
    names, familiarity = metadata["class_names"], metadata["familiarity"]
    test_images, test_labels = test
    test_verdicts, test_probabilities = familiarity.verdicts_and_probabilities(model, test_images)  # one pass for both columns
    accuracy = float((test_probabilities.argmax(axis=1) == test_labels).mean())
    photo_types, class_types = type_tables(realworld)
    images, files = sets["real fruit photos"]
    truths = [photo_types[Path(path).relative_to(realworld).as_posix()] for path in files]

    def right_types(predictions):
        return np.array([class_types.get(p.classes[0]) == truth for p, truth in zip(predictions, truths)])

    predictions = predict_images(model, names, images, files, 5, familiarity)
    whole = predict_images(model, names, images, files, 5, familiarity, cut_out=False)
    right, accepted = right_types(predictions), np.array([p.verdict == KNOWN for p in predictions])
    row = {"model": Path(run_dir).name, "test accuracy": accuracy,
           "real type top-1": float(right.mean()),
           "real type top-5": float(np.mean([any(class_types.get(c) == truth for c in p.classes)
                                             for p, truth in zip(predictions, truths)])),
           "real type top-1, whole photo": float(right_types(whole).mean()),
           "real accepted": float(accepted.mean()),
           "precision among accepted": float(right[accepted].mean()) if accepted.any() else float("nan")}

    def accepted_share(images):
        return float(np.mean([v == KNOWN for v, _ in familiarity.verdicts(model, images)]))
    row.update({"unseen accepted": accepted_share(sets["unseen classes"][0]),
                "non-fruit accepted": accepted_share(sets["non-fruit photos"][0]),
                "test accepted": float(np.mean([v == KNOWN for v, _ in test_verdicts])),
                "training minutes": training_minutes(run_dir)})
    return row


def measure_methods(run_dir, train_split, train_rows, test, sets):
    """{method: {set: (AUROC, accepted share)}} at 99% Test acceptance, and the shipped verdict's shares."""
    from fruitkeras.familiarity import KNOWN
    from fruitkeras.verdict_checks import CHECKS
    from fruitkeras.runs import load_model

    model, metadata = load_model(Path(run_dir) / "model.keras")
    familiarity = metadata["familiarity"]
    rng = np.random.default_rng(1)
    train_images = train_split.images[train_rows].astype(np.float32) / 255
    train_features, _ = penultimate_and_logits(model, train_images)
    means, precision = mahalanobis_fit(train_features, train_split.labels[train_rows])
    outliers, _ = penultimate_and_logits(model, training_outliers(train_images, rng))
    head = outlier_exposure_head(train_features, outliers)
    del train_images

    def scores(images):
        features, logits = penultimate_and_logits(model, images)
        shipped_tests = familiarity.scores(model, images)  # each of the verdict's tests, its row from the registry
        return {
            "max-softmax": np.exp(logits.max(axis=1) - log_sum_exp(logits)),
            "max-logit": logits.max(axis=1),
            "energy (log-sum-exp of the logits)": log_sum_exp(logits),
            "Mahalanobis (penultimate, class means, shared covariance)": mahalanobis_score(features, means, precision),
            "outlier exposure (head only, synthetic outliers)": head(features),
            **{check.label: shipped_tests[check.name] for check, _ in CHECKS},
        }

    def known_share(scored):  # the shipped verdict, from its tests' scores already computed
        verdicts = familiarity.verdicts_of({check.name: scored[check.label] for check, _ in CHECKS})
        return float(np.mean([v == KNOWN for v in verdicts]))

    inside = scores(test[0])
    table = {method: {} for method in inside}
    shipped = {"Test": known_share(inside)}
    for name, (images, _) in sets.items():
        outside = scores(images)
        for method in inside:
            threshold = np.quantile(inside[method], 1 - TEST_ACCEPTED)
            table[method][name] = (auroc(inside[method], outside[method]), float(np.mean(outside[method] >= threshold)))
        shipped[name] = known_share(outside)
    return table, shipped


def percent(value):
    return "–" if value != value else f"{value:.1%}"


def write_report(out, run_name, table, shipped, models, set_names):
    lines = [f"# Open-set measurements (generated by `benchmarks/open_set.py`, {datetime.now():%Y-%m-%d})", "",
             "[Manual](index.md) · [Real photos and the verdict](real-photos.md)", ""]
    if table is None:  # --models-only: the methods section as an earlier run wrote it
        earlier = Path(out).read_text()
        lines += earlier[earlier.index("## Methods"): earlier.index("## Models")].rstrip("\n").splitlines()
    else:
        lines += methods_lines(run_name, table, shipped, set_names)
    lines += models_lines(models)
    Path(out).write_text("\n".join(lines) + "\n")


def methods_lines(run_name, table, shipped, set_names):
    lines = [f"## Methods, on `{run_name}`", "",
             "AUROC against the 77-class Test photos / share accepted at the threshold that accepts 99% of Test "
             "(lower is better for every set here).", "",
             "| method | " + " | ".join(set_names) + " |", "|---|" + "---:|" * len(set_names)]
    for method, row in table.items():
        lines.append(f"| {method} | " + " | ".join(f"{row[s][0]:.3f} / {percent(row[s][1])}" for s in set_names) + " |")
    lines.append(f"| **shipped verdict, at its own thresholds** (Test accepted: {percent(shipped['Test'])}) | "
                 + " | ".join(f"– / {percent(shipped[s])}" for s in set_names) + " |")
    return lines


def models_lines(models):
    columns = ["model", "test accuracy", "test accepted", "real type top-1", "real type top-5",
               "real type top-1, whole photo", "real accepted",
               "precision among accepted", "unseen accepted", "non-fruit accepted", "training minutes"]
    lines = ["", "## Models", "", "Shares accepted are those with the verdict `known`, at each run's own thresholds. "
              "Real photos as `fruitkeras predict` answers them: an unfamiliar photo's classes guessed from the fruit "
              "cut out of it (GrabCut); the whole-photo column without that.",
              "", "| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for row in models:
        cells = [row["model"], f"{row['test accuracy']:.4f}"] + [percent(row[c]) for c in columns[2:-1]] \
            + [f"{row['training minutes']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def previous_run(reference, folder):
    """A run folder with the shipped run's model, history and record as they were at a git ``reference``."""
    folder.mkdir(parents=True)
    for name in ("model.keras", "history.csv", "run.json", "architecture.json"):
        content = subprocess.run(["git", "show", f"{reference}:runs/fruits77-vgg_small/{name}"], check=True,
                                 capture_output=True).stdout
        (folder / name).write_bytes(content)
    return folder


def main():
    from fruitkeras import data as datalib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "fruits-360-77class")
    parser.add_argument("--realworld", type=Path, default=SHARED / "realworld-dev")
    parser.add_argument("--unseen", type=Path, default=SHARED / "unseen-classes-dev")
    parser.add_argument("--model", action="append", type=Path, help="run folders; the first gets the methods table")
    parser.add_argument("--previous", help="also measure the shipped run as it was at this git commit")
    parser.add_argument("--out", type=Path, default=Path("docs/open-set-measured.md"))
    parser.add_argument("--models-only", action="store_true",
                        help="measure the models only; keep the methods table of --out as it is")
    args = parser.parse_args()
    runs = args.model or [Path("runs/fruits77-vgg_small")]

    from fruitkeras.runs import load_model

    _, metadata = load_model(runs[0] / "model.keras")
    size = tuple(metadata["input_size"])
    test_split = datalib.read_split(args.data / datalib.TEST_SPLIT, size)
    datalib.relabel(test_split, metadata["class_names"])
    test = (test_split.images.astype(np.float32) / 255, test_split.labels)
    real, real_files = folder_images(args.realworld, size)
    non_fruit = np.array(["unknown" in Path(p).relative_to(args.realworld).parts[:1] for p in real_files])
    unseen, unseen_files = folder_images(args.unseen, size)
    sets = {"unseen classes": (unseen, unseen_files),
            "real fruit photos": (real[~non_fruit], [p for p, n in zip(real_files, non_fruit) if not n]),
            "non-fruit photos": (real[non_fruit], [p for p, n in zip(real_files, non_fruit) if n])}
    sets.update({name: (images, None) for name, images in synthetic_sets(test[0], np.random.default_rng(0)).items()})

    table = shipped = None
    if not args.models_only:
        from fruitkeras.training import trained_split

        record = json.loads((runs[0] / "run.json").read_text())
        _, train_split, train_rows, _ = trained_split(runs[0], record, args.data, metadata["class_names"], size)
        table, shipped = measure_methods(runs[0], train_split, train_rows, test, sets)
        del train_split

    with tempfile.TemporaryDirectory() as scratch:
        measured = list(runs)
        if args.previous:
            measured.append(previous_run(args.previous, Path(scratch) / f"fruits77-vgg_small@{args.previous}"))
        models = [measure_model(run, test, sets, args.realworld, args.data) for run in measured]
    write_report(args.out, runs[0].name, table, shipped, models, list(sets))
    print(args.out.read_text())
    if table is None:
        return
    from fruitkeras.verdict_checks.nearest_photo import NearestTrainingPhoto

    ours = table[NearestTrainingPhoto.label]["unseen classes"][1]
    baseline = table["max-softmax"]["unseen classes"][1]
    print(f"unseen-class photos accepted at 99% Test acceptance: familiarity {ours:.1%}, max-softmax {baseline:.1%}; "
          f"ratio {ours / baseline:.2f} (lower is better)")


if __name__ == "__main__":
    main()
