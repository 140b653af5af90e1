"""Predictions for image files: the top classes with their probabilities, and the verdict.

The verdict (``fruitkeras.familiarity``) says whether to trust the top class:
``known``, ``unknown class``, ``unfamiliar photo``, or ``not available`` for
a run without familiarity statistics.  A photo found unfamiliar gets a second
look (``look_closer``): the guess is made on the fruit cut out of it, on
white; the verdict stays the photo's.

The files come from ``fruitkeras.image_files``, read as every other command
reads them.

``predict`` streams: the files are read and answered ``CHUNK`` at a time, and
each chunk's answers are written before the next is read, so memory stays flat
and the first answers appear at once however many files there are.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fruitkeras import data as datalib
from fruitkeras.familiarity import NOT_AVAILABLE, UNFAMILIAR_PHOTO
from fruitkeras.image_files import collect_images, no_readable_image, read_readable, warn_skipped
from fruitkeras.prediction_formats import format_predictions

# Images read, judged and written at a time.  Peak memory for 5,000 photos (docs/commands.md#predict): 0.77 GB at
# 64, 0.86 GB at 128, 0.99 GB at 256; one photo alone takes 0.71 GB (TensorFlow and the model).
CHUNK = 64


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
    from fruitkeras.forward import class_probabilities

    flags = [False] * len(images)
    if familiarity is None:
        return images, class_probabilities(model, images), [(NOT_AVAILABLE, None)] * len(images), flags
    verdicts, probabilities = familiarity.verdicts_and_probabilities(model, images)
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
        probabilities[flags] = class_probabilities(model, images[flags])
    return images, probabilities, verdicts, flags


def predict_images(model, class_names, images, paths, top=5, familiarity=None, cut_out=True):
    """Top-``top`` classes and the verdict for each image (batch norm in inference mode).

    ``familiarity``: the run's ``Familiarity`` statistics; without them every verdict is ``not available``.
    ``cut_out``: guess an unfamiliar photo's classes from the fruit cut out of it (``look_closer``).
    """
    images, probabilities, judged, cut = look_closer(model, familiarity, images, paths, cut_out)
    return [Prediction(path, *top_classes(p, class_names, top), *verdict, was_cut)
            for path, p, verdict, was_cut in zip(paths, probabilities, judged, cut)]


def stream_predictions(model_path, paths, top=5, cut_out=True, chunk=CHUNK, progress=None, skipped=None):
    """``Prediction``s for image files, in order, read and answered ``chunk`` files at a time.

    Unreadable files are warned about on stderr and left out, once some file
    has been readable (and added to the list ``skipped``, when given); when
    none is, the first one's problem is the error, raised before anything is
    yielded.  ``progress(done, total)`` is called after each chunk.
    """
    from fruitkeras.runs import load_model

    model, metadata = load_model(model_path)
    pending, answered = [], False
    for start in range(0, len(paths), chunk):
        images, kept, problems = read_readable(paths[start : start + chunk], metadata["input_size"])
        pending += problems
        if skipped is not None:
            skipped += problems
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


def predict_files(model_path, paths, top=5, style="table", cut_out=True, chunk=CHUNK, progress=None, skipped=None):
    """The ``predict`` command's work: image files in, the answer out as pieces of text, each written as soon as
    its chunk of files is answered (``format_predictions``); unreadable files go to the list ``skipped``."""
    return format_predictions(stream_predictions(model_path, paths, top, cut_out, chunk, progress, skipped), style)
