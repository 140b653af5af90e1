"""Predictions for image files: the top classes with their probabilities, and the verdict.

The verdict (``fruitkeras.familiarity``) says whether to trust the top class:
``known``, ``unknown class``, ``unfamiliar photo``, or ``not available`` for
a run without familiarity statistics.  A photo found unfamiliar gets a second
look (``look_closer``): the guess is made on the fruit cut out of it, on
white; the verdict stays the photo's.

Images go through ``fruitkeras.data.load_image``, the conversion every other
command uses.  ``collect_images`` turns the command line's files, folders and
globs into a list of image files, for ``predict`` and ``explain`` alike.

``predict`` streams: the files are read and answered ``CHUNK`` at a time, and
each chunk's answers are written before the next is read, so memory stays flat
and the first answers appear at once however many files there are.
"""

import glob
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fruitkeras import data as datalib
from fruitkeras.errors import FruitkerasError
from fruitkeras.familiarity import NOT_AVAILABLE, UNFAMILIAR_PHOTO

# Images read, judged and written at a time.  Peak memory for 5,000 photos (docs/commands.md#predict): 0.77 GB at
# 64, 0.86 GB at 128, 0.99 GB at 256; one photo alone takes 0.71 GB (TensorFlow and the model).
CHUNK = 64


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


def read_readable(paths, size):
    """(images as float32 (N, H, W, 3), the paths read, the problems of the rest)."""
    images, kept, problems = [], [], []
    for path in paths:
        try:
            images.append(datalib.load_image(path, size))
            kept.append(path)
        except datalib.ImageError as error:
            problems.append(error)
    return (np.stack(images) if images else None), kept, problems


def no_readable_image(paths, problems):
    return problems[0] if len(problems) == 1 else FruitkerasError(
        f"no readable image among {len(paths)} files; first: {problems[0]}")


def warn_skipped(problems, stream=None):
    for problem in problems:
        print(f"warning: skipped {problem}", file=stream or sys.stderr)


def load_images(paths, size, stream=None):
    """The readable images as float32 (N, H, W, 3) with their paths.

    Unreadable files are reported on ``stream`` (stderr) and left out; when
    none is readable, the first one's problem is the error.
    """
    images, kept, problems = read_readable(paths, size)
    if not kept:
        raise no_readable_image(paths, problems)
    warn_skipped(problems, stream)
    return images, kept


@dataclass
class Prediction:
    path: Path
    classes: list  # the top classes, most probable first
    probabilities: list
    verdict: str = NOT_AVAILABLE
    familiarity: float = None  # the cosine similarity to the nearest training photo; None when not available
    cut_out: bool = False  # the classes are guessed from the fruit cut out of the photo (``look_closer``)


def top_classes(probabilities, class_names, top=5):
    """(classes, probabilities) of the ``top`` most probable classes of one image, most probable first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[: min(top, len(class_names))]
    return [class_names[i] for i in order], [float(probabilities[i]) for i in order]


def look_closer(model, familiarity, images, sources, cut_out=True):
    """(images, class probabilities, [(verdict, familiarity)], [cut out?]): each image's verdict, and the image
    to answer from with its probabilities.

    A photo judged ``unfamiliar photo`` is given a second look: the fruit cut
    out of it (``fruitkeras.foreground``, from ``sources``: the files or
    bytes the images were read from) replaces it for the guess.  The verdict
    stays the whole photo's: on realworld-dev the cut-outs that the
    statistics called familiar were mostly of the wrong class (1 of 7 right),
    so a cut-out improves the guess and never the trust in it.  Without
    ``familiarity`` every verdict is ``not available`` and nothing is cut out.
    The verdict and the probabilities come from one forward pass; only the
    cut-outs take a second.
    """
    from fruitkeras import foreground
    from fruitkeras.forward import predict

    flags = [False] * len(images)
    if familiarity is None:
        return images, predict(model, images), [(NOT_AVAILABLE, None)] * len(images), flags
    verdicts, probabilities = familiarity.assess(model, images)
    for index, (verdict, _) in enumerate(verdicts):
        if cut_out and verdict == UNFAMILIAR_PHOTO:
            piece = foreground.cut_out(datalib.read_rgb(sources[index]))
            if piece is not None:
                if not any(flags):
                    images = np.array(images)  # the caller's array stays as it was
                images[index] = datalib.fit_to_size(piece, images.shape[1:3]).astype(np.float32) * np.float32(
                    datalib.PIXEL_SCALE)
                flags[index] = True
    if any(flags):
        probabilities[flags] = predict(model, images[flags])
    return images, probabilities, verdicts, flags


def predict_images(model, class_names, images, paths, top=5, familiarity=None, cut_out=True):
    """Top-``top`` classes and the verdict for each image (batch norm in inference mode).

    ``familiarity``: the run's ``Familiarity`` statistics; without them every verdict is ``not available``.
    ``cut_out``: guess an unfamiliar photo's classes from the fruit cut out of it (``look_closer``).
    """
    images, probabilities, judged, cut = look_closer(model, familiarity, images, paths, cut_out)
    return [Prediction(path, *top_classes(p, class_names, top), *verdict, was_cut)
            for path, p, verdict, was_cut in zip(paths, probabilities, judged, cut)]


def rounded(familiarity):
    return None if familiarity is None else round(familiarity, 4)


def format_predictions(predictions, style):
    """The predictions as pieces of text, one per prediction (after a header for ``csv``), that joined are the
    whole answer: ``table`` for people, ``csv`` or ``json`` (one list) for programs."""
    import json

    number = -1
    for number, p in enumerate(predictions):  # nothing is written before the first answer, not even a header
        if style == "json":
            item = json.dumps({"image": str(p.path), "verdict": p.verdict, "familiarity": rounded(p.familiarity),
                               "cut_out": p.cut_out,
                               "top": [{"class": c, "probability": round(q, 6)}
                                       for c, q in zip(p.classes, p.probabilities)]}, indent=2)
            yield ("[\n" if number == 0 else ",\n") + "\n".join("  " + line for line in item.splitlines())
        elif style == "csv":
            yield ("image,rank,class,probability,verdict,familiarity,cut_out\n" if number == 0 else "") + _csv_rows(p)
        else:
            yield _table_lines(p)
    if style == "json":
        yield "\n]\n" if number >= 0 else "[]\n"


def _csv_rows(p):
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    familiarity = "" if p.familiarity is None else f"{p.familiarity:.4f}"
    for rank, (name, probability) in enumerate(zip(p.classes, p.probabilities), start=1):
        writer.writerow([str(p.path), rank, name, f"{probability:.6f}", p.verdict, familiarity,
                         "yes" if p.cut_out else "no"])
    return out.getvalue()


def _table_lines(p):
    familiarity = "" if p.familiarity is None else f", familiarity {p.familiarity:.3f}"
    cut = " (the fruit cut out of the photo)" if p.cut_out else ""
    lines = [f"{p.path}: {p.classes[0]} ({p.probabilities[0]:.1%}); verdict: {p.verdict}{familiarity}{cut}"]
    lines += [f"    {rank}. {name:<24} {probability:7.2%}"
              for rank, (name, probability) in enumerate(zip(p.classes, p.probabilities), start=1)]
    return "\n".join(lines) + "\n"


def stream_predictions(model_path, paths, top=5, cut_out=True, chunk=CHUNK, progress=None):
    """``Prediction``s for image files, in order, read and answered ``chunk`` files at a time.

    Unreadable files are warned about on stderr and left out, once some file
    has been readable; when none is, the first one's problem is the error,
    raised before anything is yielded.  ``progress(done, total)`` is called
    after each chunk.
    """
    from fruitkeras.runs import load_model

    model, metadata = load_model(model_path)
    pending, answered = [], False
    for start in range(0, len(paths), chunk):
        images, kept, problems = read_readable(paths[start : start + chunk], metadata["input_size"])
        pending += problems
        if kept:
            answered = True
            warn_skipped(pending)
            pending = []
            yield from predict_images(model, metadata["class_names"], images, kept, top,
                                      metadata.get("familiarity"), cut_out)
        if progress:
            progress(min(start + chunk, len(paths)), len(paths))
    if not answered:
        raise no_readable_image(paths, pending)
    warn_skipped(pending)


def predict_paths(model_path, inputs, top=5, cut_out=True):
    """``Prediction``s (top classes, verdict, familiarity) for files, folders or globs."""
    return list(stream_predictions(model_path, collect_images(inputs), top, cut_out))


def predict_files(model_path, paths, top=5, style="table", cut_out=True, chunk=CHUNK, progress=None):
    """The ``predict`` command's work: image files in, the answer out as pieces of text, each written as soon as
    its chunk of files is answered (``format_predictions``)."""
    return format_predictions(stream_predictions(model_path, paths, top, cut_out, chunk, progress), style)
