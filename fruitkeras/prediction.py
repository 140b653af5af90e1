"""Predictions for image files: the top classes with their probabilities.

Images go through ``fruitkeras.data.load_image``, the conversion every other
command uses.  ``collect_images`` turns the command line's files, folders and
globs into a list of image files, for ``predict`` and ``explain`` alike.
"""

import glob
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fruitkeras import data as datalib
from fruitkeras.errors import FruitkerasError


def collect_images(inputs):
    """Image files from files, folders (their image files, sorted, recursively) and globs.

    A named file that is missing is an error; so is a folder or glob with no
    image in it.  Repeats are dropped, order is kept.
    """
    found = []
    for given in inputs:
        given = str(given)
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in datalib.IMAGE_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not inside:
                raise FruitkerasError(f"{path}: no image files in this folder")
            found += inside
        elif path.exists():
            found.append(path)
        elif glob.has_magic(given):
            matches = sorted(Path(p) for p in glob.glob(given, recursive=True) if Path(p).is_file())
            if not matches:
                raise FruitkerasError(f"{given}: no file matches")
            found += matches
        else:
            raise FruitkerasError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))


def load_images(paths, size, stream=None):
    """The readable images as float32 (N, H, W, 3) with their paths.

    Unreadable files are reported on ``stream`` (stderr) and left out; when
    none is readable, the first one's problem is the error.
    """
    images, kept, problems = [], [], []
    for path in paths:
        try:
            images.append(datalib.load_image(path, size))
            kept.append(path)
        except datalib.ImageError as error:
            problems.append(error)
    if not kept:
        raise problems[0] if len(problems) == 1 else FruitkerasError(
            f"no readable image among {len(paths)} files; first: {problems[0]}")
    for problem in problems:
        print(f"warning: skipped {problem}", file=stream or sys.stderr)
    return np.stack(images), kept


@dataclass
class Prediction:
    path: Path
    classes: list  # the top classes, most probable first
    probabilities: list


def top_classes(probabilities, class_names, top=5):
    """(classes, probabilities) of the ``top`` most probable classes of one image, most probable first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[: min(top, len(class_names))]
    return [class_names[i] for i in order], [float(probabilities[i]) for i in order]


def predict_images(model, class_names, images, paths, top=5):
    """Top-``top`` classes for each image (batch norm in inference mode)."""
    from fruitkeras.forward import predict

    return [Prediction(path, *top_classes(p, class_names, top)) for path, p in zip(paths, predict(model, images))]


def format_predictions(predictions, style):
    """The predictions as text: ``table`` for people, ``csv`` or ``json`` for programs."""
    if style == "json":
        import json

        return json.dumps([
            {"image": str(p.path), "top": [{"class": c, "probability": round(q, 6)} for c, q in zip(p.classes, p.probabilities)]}
            for p in predictions
        ], indent=2)
    if style == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["image", "rank", "class", "probability"])
        for p in predictions:
            for rank, (name, probability) in enumerate(zip(p.classes, p.probabilities), start=1):
                writer.writerow([str(p.path), rank, name, f"{probability:.6f}"])
        return out.getvalue().rstrip("\n")
    lines = []
    for p in predictions:
        lines.append(f"{p.path}: {p.classes[0]} ({p.probabilities[0]:.1%})")
        lines += [f"    {rank}. {name:<24} {probability:7.2%}"
                  for rank, (name, probability) in enumerate(zip(p.classes, p.probabilities), start=1)]
    return "\n".join(lines)


def predict_files(model_path, inputs, top=5, style="table"):
    """The ``predict`` command's work: files, folders or globs in, formatted text out."""
    from fruitkeras.runs import load_model

    paths = collect_images(inputs)
    model, metadata = load_model(model_path)
    images, kept = load_images(paths, metadata["input_size"])
    return format_predictions(predict_images(model, metadata["class_names"], images, kept, top), style)
