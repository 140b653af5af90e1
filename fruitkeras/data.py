"""Finding, checking and loading Fruits-360-style image folders.

Layout: ``ROOT/Training/<class>/*.jpg`` and ``ROOT/Test/<class>/*.jpg``.
Every image reaches a model through ``load_rgb`` and ``PIXEL_SCALE``, in
training, evaluation and explanation alike.
"""

import io
import mmap
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fruitkeras.errors import FruitkerasError

DATA_ENV = "FRUITKERAS_DATA"
TRAIN_SPLIT, TEST_SPLIT = "Training", "Test"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
PIXEL_SCALE = 1.0 / 255.0  # uint8 pixels -> the [0, 1] floats models see
BACKGROUND = (255, 255, 255)  # Fruits-360 photos stand on white


class ImageError(FruitkerasError):
    """One image file cannot be used."""


def resolve_data_dir(option=None):
    """The dataset root: ``--data``, else $FRUITKERAS_DATA, else ./data.

    The first one given is used; if it is missing the error says what was tried.
    """
    tried = []
    for source, value in (("--data", option), (DATA_ENV, os.environ.get(DATA_ENV)), ("./data", "data")):
        if not value:
            tried.append(f"{source} (not given)")
            continue
        path = Path(value)
        if path.is_dir():
            return path
        tried.append(f"{source} = {path} (no such folder)")
        if source != "./data":
            break  # an explicit choice that is wrong must not fall through to another dataset
    raise FruitkerasError("no dataset folder found; tried " + ", ".join(tried))


def read_rgb(source):
    """Decode an image file (path or bytes) to a uint8 RGB array (H, W, 3), upright as a viewer shows it.

    The EXIF orientation tag a phone writes is applied.  Grey images become
    RGB, 16-bit, 32-bit and float ones scaled to 8 bits (``_eight_bit_grey``);
    transparent ones are laid on the white background the dataset's photos have.
    """
    name = source if isinstance(source, (str, Path)) else "image"
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            image = ImageOps.exif_transpose(image)  # a phone's sideways JPEG, upright
            if image.mode.startswith("I") or image.mode == "F":
                image = _eight_bit_grey(image, name)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, BACKGROUND + (255,))
                image = Image.alpha_composite(background, image)
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise ImageError(f"{name}: unreadable image ({error})") from None
    except Image.DecompressionBombError as error:  # a header that claims billions of pixels
        raise ImageError(f"{name}: image too large ({error})") from None


def _eight_bit_grey(image, name):
    """A greyscale image of 16-bit, 32-bit integer or float samples as mode L (0-255).

    Pillow's own conversion clips these at 255, which makes a 16-bit photo all
    white.  16-bit samples are scaled from 0-65535; 32-bit integers (older
    Pillows open 16-bit PNGs so) and floats from the range their values show:
    0-1 for floats, 0-255, else 0-65535; anything else has no scale to tell.
    """
    values = np.asarray(image, dtype=np.float64)
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: {image.mode} image with non-finite samples")
    if image.mode.startswith("I;16"):
        top = 65535.0
    elif image.mode == "F" and low >= 0 and high <= 1:
        top = 1.0
    elif low >= 0 and high <= 255:
        top = 255.0
    elif low >= 0 and high <= 65535:
        top = 65535.0
    else:
        raise ImageError(f"{name}: {image.mode} samples from {low:g} to {high:g} have no known 8-bit scale")
    return Image.fromarray(np.round(values * (255.0 / top)).astype(np.uint8), "L")


def fit_to_size(rgb, size):
    """Pad to a square with the background colour, then resize to ``size`` (H, W)."""
    height, width = rgb.shape[:2]
    if (height, width) == tuple(size):
        return rgb
    image = Image.fromarray(rgb)
    if height != width:
        side = max(height, width)
        square = Image.new("RGB", (side, side), BACKGROUND)
        square.paste(image, ((side - width) // 2, (side - height) // 2))
        image = square
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR))


def load_rgb(source, size):
    """A file as the uint8 (H, W, 3) array a model of input ``size`` takes."""
    return fit_to_size(read_rgb(source), size)


def load_image(path, size):
    """A file as model input: float32 (H, W, 3) in [0, 1]."""
    return load_rgb(path, size).astype(np.float32) * np.float32(PIXEL_SCALE)


@dataclass
class Split:
    """The images of one split, labels indexing ``class_names``.

    ``images`` is None until the files are decoded (``decode_split``); then it
    holds every usable image as uint8 (N, H, W, 3) and ``paths``/``labels``
    list those images only.
    """

    paths: list
    labels: np.ndarray
    class_names: list
    skipped: list  # (path, reason) for files that could not be used
    images: np.ndarray = None
    _tensor: object = field(default=None, repr=False, compare=False)

    def __len__(self):
        return len(self.paths)

    def tensor(self):
        """The images as one uint8 tensor, made once.  It shares the array's memory
        where the array is 64-byte aligned (as ``decode_split`` makes it): a 1 GB
        copy costs seconds on a small machine, and memory."""
        import tensorflow as tf

        if self._tensor is None:
            aligned = self.images.flags.c_contiguous and self.images.ctypes.data % 64 == 0
            self._tensor = (tf.experimental.dlpack.from_dlpack(self.images.__dlpack__()) if aligned
                            else tf.constant(self.images))
        return self._tensor

    def subset(self, mask):
        """The images selected by a boolean or index array (no file is read)."""
        paths = np.asarray(self.paths)[mask]
        images = None if self.images is None else self.images[mask]
        return Split(list(paths), self.labels[mask], self.class_names, [], images)


def class_folders(split_dir):
    if not split_dir.is_dir():
        raise FruitkerasError(f"{split_dir}: missing; expected {split_dir.parent}/{split_dir.name}/<class>/<images>")
    names = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise FruitkerasError(f"{split_dir}: no class folders inside")
    return names


def scan_split(split_dir, limit_per_class=None, seed=0):
    """List the image files of a split, reading no image.

    Files without an image suffix are skipped and reported; a class folder
    with no image file is an error.  Decoding (and finding corrupt files) is
    ``decode_split``'s job, so every image is decoded once.
    """
    split_dir = Path(split_dir)
    class_names = class_folders(split_dir)
    rng = np.random.default_rng(seed)
    paths, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        # scandir's entries know their type without a stat each: the start of a 48,605-photo training.
        with os.scandir(split_dir / name) as entries:
            files = sorted(split_dir / name / entry.name for entry in entries
                           if entry.is_file() and not entry.name.startswith("."))
        good = []
        for path in files:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                good.append(path)
            else:
                skipped.append((path, "not an image file name"))
        if not good:
            raise FruitkerasError(f"{split_dir / name}: class '{name}' has no image files")
        if limit_per_class and len(good) > limit_per_class:
            chosen = rng.choice(len(good), size=limit_per_class, replace=False)
            good = [good[i] for i in sorted(chosen)]
        paths += [str(p) for p in good]
        labels += [label] * len(good)
    return Split(paths, np.asarray(labels, dtype=np.int32), class_names, skipped)


def list_splits(data_root, limit_per_class=None, seed=0):
    """A dataset folder's Training/ and Test/ (None when it has none) listed as ``scan_split`` lists them, reading no
    image, and checked before any work: enough classes, and the same in both."""
    training_dir, test_dir = Path(data_root) / TRAIN_SPLIT, Path(data_root) / TEST_SPLIT
    training = scan_split(training_dir, limit_per_class, seed)
    check_enough_classes(training.class_names, training_dir)
    test = None
    if test_dir.is_dir():
        test = scan_split(test_dir)
        check_same_classes(training.class_names, test.class_names, "Training/", "Test/")
    return training, test


def decode_split(split, size):
    """Decode every file of a listed split once; returns a new Split holding the uint8 images.

    JPEGs of exactly ``size`` without EXIF data (the dataset's own files; tried
    when the first file is of that size) are decoded by TensorFlow's parallel decoder
    with libjpeg's accurate integer DCT, which gives the very pixels PIL gives
    (grey ones become RGB alike); every other file (another size, PNG and
    other formats, or one TensorFlow cannot read) goes through ``load_rgb``
    on a thread per core, as in explanations.  Files neither can read move to
    ``skipped``; a class left with no image is an error.
    """
    import tensorflow as tf

    height, width = size
    images = aligned_zeros((len(split), height, width, 3))
    done = np.zeros(len(split), dtype=bool)

    def decode(index, path):
        contents = tf.io.read_file(path)
        # decode_jpeg reads PNG and GIF too, but would drop their transparency: JPEGs only.  It also ignores
        # EXIF orientation: a JPEG with EXIF data is Pillow's (``_has_exif``).
        image = tf.cond(tf.io.is_jpeg(contents) & ~_has_exif(contents),
                        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
                        lambda: tf.zeros((0, 0, 3), tf.uint8))
        fits = tf.reduce_all(tf.equal(tf.shape(image)[:2], [height, width]))
        image = tf.cond(fits, lambda: image, lambda: tf.zeros((height, width, 3), tf.uint8))
        image.set_shape((height, width, 3))
        return index, image, fits

    if _first_image_size(split.paths) == (height, width):  # else every file would be decoded twice
        listed = tf.data.Dataset.from_tensor_slices((np.arange(len(split)), np.asarray(split.paths, dtype=str)))
        decoded = listed.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()  # failures: PIL's turn
        for indices, batch, fits in decoded.batch(512).as_numpy_iterator():
            images[indices[fits]] = batch[fits]
            done[indices[fits]] = True

    def load(index):
        try:
            images[index] = load_rgb(split.paths[index], size)
        except ImageError as error:
            return index, str(error).split(": ", 1)[-1]
        return index, None

    # Pillow lets go of the GIL while it decodes and resizes: threads use every core.
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        failures = {index: reason for index, reason in pool.map(load, np.flatnonzero(~done)) if reason}
    readable = np.ones(len(split), dtype=bool)
    readable[list(failures)] = False
    skipped = list(split.skipped) + [(Path(split.paths[i]), reason) for i, reason in failures.items()]
    for label, name in enumerate(split.class_names):
        if not readable[split.labels == label].any():
            folder = Path(split.paths[int(np.argmax(split.labels == label))]).parent
            raise FruitkerasError(f"{folder}: class '{name}' has no readable images")
    if readable.all():  # the usual case: no copy of the (large) image array
        return Split(split.paths, split.labels, split.class_names, skipped, images)
    kept = split.subset(readable)
    kept.skipped, kept.images = skipped, images[readable]
    return kept


def _has_exif(contents):
    """Whether a JPEG's bytes (a string tensor) hold an EXIF segment where one is written.

    That is APP1 straight after the start marker, as cameras write it, or after
    a JFIF APP0 segment, as Pillow and editors do.  (TensorFlow's regular
    expressions cannot read binary data.)
    """
    import tensorflow as tf

    after_start = tf.strings.substr(contents, 6, 4) == "Exif"
    app0 = tf.strings.substr(contents, 2, 2) == b"\xff\xe0"
    size = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, 4, 2), tf.uint8, fixed_length=2), tf.int32)
    after_app0 = tf.strings.substr(contents, 4 + size[0] * 256 + size[1] + 4, 4) == "Exif"
    return after_start | (app0 & after_app0)


def _first_image_size(paths):
    """(height, width) of the first file (reading its header only), or None where Pillow cannot open it."""
    try:
        with Image.open(paths[0]) as image:
            return image.height, image.width
    except (IndexError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def aligned_zeros(shape, alignment=64):
    """A zeroed uint8 array whose data starts on an ``alignment``-byte boundary,
    so that TensorFlow can use its memory in place (``Split.tensor``).

    Anonymous memory of its own (page-aligned), not NumPy's: NumPy asks the
    kernel for huge pages for a large array, and where the kernel compacts
    memory to find them at the first touch (transparent_hugepage/defrag
    "madvise"), filling the 0.57 GB of 77-class Training photos at 72x72 took
    4.6-5.5 s of the start-up against 0.27 s (the Intel development machine)."""
    if mmap.PAGESIZE % alignment:
        raise ValueError(f"alignment {alignment} does not divide the page size {mmap.PAGESIZE}")
    size = int(np.prod(shape))
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype=np.uint8, count=size).reshape(shape)


def read_split(split_dir, size, limit_per_class=None, seed=0):
    """``scan_split`` then ``decode_split``: the usable images of a split folder."""
    return decode_split(scan_split(split_dir, limit_per_class, seed), size)


def report_skipped(split, stream=None):
    stream = stream or sys.stderr
    if split.skipped:
        print(f"warning: skipped {len(split.skipped)} unusable file(s):", file=stream)
        for path, reason in split.skipped[:10]:
            print(f"  {path}: {reason}", file=stream)
        if len(split.skipped) > 10:
            print(f"  ... and {len(split.skipped) - 10} more", file=stream)


MIN_CLASSES = 2  # a classifier of one class learns nothing: its softmax is 1 whatever the photo


def check_enough_classes(class_names, where):
    """Raise unless a split to train on has ``MIN_CLASSES`` classes or more."""
    if len(class_names) < MIN_CLASSES:
        raise FruitkerasError(f"{where}: {len(class_names)} class ({', '.join(class_names)}); training needs at "
                              f"least {MIN_CLASSES} class folders")


def class_differences(expected, found):
    """(classes only in ``found``, classes only in ``expected``), each sorted."""
    return sorted(set(found) - set(expected)), sorted(set(expected) - set(found))


def check_same_classes(expected, found, expected_what, found_what):
    """Raise unless two class lists name the same classes."""
    if sorted(expected) == sorted(found):
        return
    extra, missing = class_differences(expected, found)
    parts = []
    if extra:
        parts.append(f"{found_what} has {len(extra)} class(es) unknown to {expected_what}: {_some(extra)}")
    if missing:
        parts.append(f"{found_what} lacks {len(missing)} of its {len(expected)} class(es): {_some(missing)}")
    raise FruitkerasError(f"class mismatch between {expected_what} and {found_what}: " + "; ".join(parts))


def _some(names, shown=5):
    """A few names, and how many more: a mismatch of two datasets must not print 77 names on one line."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def natural_key(path):
    """Sort key that orders r_9_100.jpg before r_10_100.jpg (Fruits-360 numbers its frames)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", Path(path).name)]


def relabel(split, class_names):
    """Renumber ``split``'s labels to index ``class_names`` (a model's output order), in place.

    The classes must be the same (``check_same_classes``); only their order may differ.
    """
    order = np.asarray([class_names.index(name) for name in split.class_names])
    split.labels = order[split.labels]
    split.class_names = list(class_names)


def split_validation(split, fraction, seed, block=1):
    """Carve a stratified validation share out of a split, reproducibly.

    Returns (training rows, validation rows): sorted index arrays into the
    split, so that no image is copied.  ``block`` > 1 takes runs of that many
    consecutive frames (in natural file name order) together: Fruits-360
    photos are frames of one rotating fruit, so a frame's neighbours are
    near-copies of it, and a validation frame whose neighbours are in
    training measures memory more than recognition.
    """
    everything = np.arange(len(split))
    if fraction <= 0:
        return everything, everything[:0]
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(split), dtype=bool)
    for label in range(len(split.class_names)):
        members = sorted(np.flatnonzero(split.labels == label), key=lambda i: natural_key(split.paths[i]))
        count = min(int(round(len(members) * fraction)), len(members) - 1)
        runs = [members[start : start + block] for start in range(0, len(members), block)]
        chosen = []
        for run in (runs[i] for i in rng.permutation(len(runs))):
            if len(chosen) >= count:
                break
            chosen.extend(run[: count - len(chosen)])
        val_mask[chosen] = True
    return everything[~val_mask], everything[val_mask]


def make_dataset(split, batch_size, shuffle=False, seed=0, augmenter=None, repeat=False, rows=None, first_epoch=0,
                 augment_from_epoch=0):
    """A tf.data pipeline over a decoded split: (shuffle), batch, scale to [0, 1], (augment), prefetch.

    ``rows`` picks images of the split by index (default: all, in order).  The
    images stay one uint8 tensor in memory and batches are gathered from it by
    index, so neither a subset nor a reshuffle each epoch copies any image.

    Shuffled (training) pipelines are stateless: epoch e's order is a function
    of (seed, e), and each batch's augmentation of (seed, e, its number in the
    epoch) (``fruitkeras.augmentation``), so the stream is the same whatever ran
    before, however many threads run it, and from whatever epoch it starts
    (``first_epoch``: a resumed run starts at its next epoch; tf.distribute also
    rebuilds the pipeline for its replicas and workers, which must see the same
    global batches).  They drop the last partial batch: a batch of a few images
    gives batch-norm statistics far from the population's.  ``repeat``:
    endless, one epoch after another, so that one iterator serves every epoch;
    otherwise the one epoch ``first_epoch``.  ``augment_from_epoch`` (counted
    from 0): the epochs before it see the photos as they are.

    tf.data's autotuning is off, with fixed parallelism: deleting an iterator
    waited for the autotuning thread's sleep, which grows to a minute, and
    stalled training for up to a minute at epoch ends.
    """
    import tensorflow as tf

    from fruitkeras.augmentation import batch_key

    if split.images is None:
        raise ValueError("make_dataset needs a decoded split (decode_split)")
    images = split.tensor()
    labels = tf.constant(split.labels)
    rows = np.arange(len(split)) if rows is None else np.asarray(rows, dtype=np.int64)
    workers = os.cpu_count() or 1
    if shuffle:
        drop_remainder = len(rows) >= batch_size
        row_tensor = tf.constant(rows)

        def epoch_batches(epoch):
            order = tf.random.experimental.stateless_shuffle(row_tensor, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
            batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
            return batches.enumerate().map(lambda number, index: (index, batch_key(seed, epoch, number), epoch))

        last = np.iinfo(np.int64).max if repeat else first_epoch + 1
        indices = tf.data.Dataset.range(first_epoch, last).flat_map(tf.autograph.experimental.do_not_convert(
            epoch_batches))
    else:
        if augmenter is not None:
            raise ValueError("augmentation is keyed on (seed, epoch, batch): it needs a shuffled pipeline")
        indices = tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)
        if repeat:
            indices = indices.repeat()
        indices = indices.map(lambda index: (index, tf.zeros((2,), tf.int64), tf.constant(0, tf.int64)))

    def augmented(batch, key, epoch):
        if augment_from_epoch:
            return tf.cond(epoch >= augment_from_epoch, lambda: augmenter(batch, key), lambda: batch)
        return augmenter(batch, key)

    on_uint8 = getattr(augmenter, "moves_pixels_only", False)  # the same values, a quarter of the bytes

    def gather(index, key, epoch):
        batch = tf.gather(images, index)
        if augmenter is not None and on_uint8:
            batch = augmented(batch, key, epoch)
        batch = tf.cast(batch, tf.float32) * PIXEL_SCALE
        if augmenter is not None and not on_uint8:
            batch = augmented(batch, key, epoch)
        return batch, tf.gather(labels, index)

    # Plain TensorFlow calls, whose Python branches test Python values only: AutoGraph's rewriting of their source
    # (the augmentation's too) cost 2.9 s of the start-up, for the same graph.
    dataset = indices.map(tf.autograph.experimental.do_not_convert(gather), num_parallel_calls=workers)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return dataset.prefetch(2).with_options(options)


def mean_colour(split, rows=None, sample=200, seed=0):
    """Mean RGB in [0, 1] over a sample of a decoded split's ``rows`` (stored with the model for occlusion fills)."""
    rows = np.arange(len(split)) if rows is None else np.asarray(rows)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(rows, size=min(sample, len(rows)), replace=False))
    return [float(v) for v in split.images[chosen].reshape(-1, 3).mean(axis=0) * PIXEL_SCALE]
