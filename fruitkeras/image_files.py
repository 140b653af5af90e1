"""Image files as the commands take them: the command line's files, folders and globs turned into a list of
image files (``collect_images``), and those files read as the model's input, the unreadable ones reported and
left out, for ``predict`` and ``explain`` alike.  Every image goes through ``fruitkeras.data.load_image``, the
conversion training uses."""

import glob
import sys
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
