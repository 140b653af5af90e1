"""Finding, checking and loading Fruits-360-style image folders.

Layout: ``ROOT/Training/<class>/*.jpg`` and ``ROOT/Test/<class>/*.jpg``.
Every image reaches a model through ``load_rgb`` and ``PIXEL_SCALE``, in
training, evaluation and explanation alike.
"""

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

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
    """Decode an image file (path or bytes) to a uint8 RGB array (H, W, 3).

    Grey images become RGB; transparent ones are laid on the white background
    the dataset's photos have.
    """
    name = source if isinstance(source, (str, Path)) else "image"
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
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
    """The usable images of one split, labels indexing ``class_names``."""

    paths: list
    labels: np.ndarray
    class_names: list
    skipped: list  # (path, reason) for files that could not be read

    def __len__(self):
        return len(self.paths)


def class_folders(split_dir):
    if not split_dir.is_dir():
        raise FruitkerasError(f"{split_dir}: missing; expected {split_dir.parent}/{split_dir.name}/<class>/<images>")
    names = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise FruitkerasError(f"{split_dir}: no class folders inside")
    return names


def scan_split(split_dir, limit_per_class=None, seed=0):
    """List and check the images of a split; unreadable files are skipped and reported."""
    split_dir = Path(split_dir)
    class_names = class_folders(split_dir)
    rng = np.random.default_rng(seed)
    paths, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        files = sorted(
            p for p in (split_dir / name).iterdir() if p.is_file() and not p.name.startswith(".")
        )
        good = []
        for path in files:
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((path, "not an image file name"))
                continue
            try:
                read_rgb(path)
            except ImageError as error:
                skipped.append((path, str(error).split(": ", 1)[-1]))
                continue
            good.append(path)
        if not good:
            raise FruitkerasError(f"{split_dir / name}: class '{name}' has no readable images")
        if limit_per_class and len(good) > limit_per_class:
            chosen = rng.choice(len(good), size=limit_per_class, replace=False)
            good = [good[i] for i in sorted(chosen)]
        paths += [str(p) for p in good]
        labels += [label] * len(good)
    return Split(paths, np.asarray(labels, dtype=np.int32), class_names, skipped)


def report_skipped(split, stream=None):
    stream = stream or sys.stderr
    if split.skipped:
        print(f"warning: skipped {len(split.skipped)} unusable file(s):", file=stream)
        for path, reason in split.skipped[:10]:
            print(f"  {path}: {reason}", file=stream)
        if len(split.skipped) > 10:
            print(f"  ... and {len(split.skipped) - 10} more", file=stream)


def check_same_classes(expected, found, expected_what, found_what):
    """Raise unless two class lists name the same classes."""
    if sorted(expected) == sorted(found):
        return
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    parts = []
    if extra:
        parts.append(f"{found_what} has classes unknown to {expected_what}: {', '.join(extra)}")
    if missing:
        parts.append(f"{found_what} lacks {', '.join(missing)}")
    raise FruitkerasError(f"class mismatch between {expected_what} and {found_what}: " + "; ".join(parts))


def split_validation(split, fraction, seed):
    """Carve a stratified validation share out of a split, reproducibly."""
    if fraction <= 0:
        return split, None
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(split), dtype=bool)
    for label in range(len(split.class_names)):
        members = np.flatnonzero(split.labels == label)
        count = int(round(len(members) * fraction))
        if count >= len(members):
            count = len(members) - 1
        val_mask[rng.choice(members, size=count, replace=False)] = True
    paths = np.asarray(split.paths)
    train = Split(list(paths[~val_mask]), split.labels[~val_mask], split.class_names, split.skipped)
    val = Split(list(paths[val_mask]), split.labels[val_mask], split.class_names, [])
    return train, (val if len(val) else None)


def make_dataset(split, size, batch_size, shuffle=False, seed=0, augmenter=None):
    """A tf.data pipeline: decode+resize (in parallel), cache uint8, shuffle, batch, scale, augment, prefetch."""
    import tensorflow as tf

    height, width = size

    def decode(path):
        return load_rgb(path.decode(), size)

    def load(path, label):
        image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
        image.set_shape((height, width, 3))
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(split.paths), split.labels))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32) * PIXEL_SCALE, y), num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_augmenter(settings, seed=0):
    """Keras preprocessing layers for the training pipeline only; None when off."""
    if not settings:
        return None
    import keras

    layers = []
    if settings["flip"]:
        layers.append(keras.layers.RandomFlip("horizontal_and_vertical", seed=seed))
    if settings["rotation"]:
        layers.append(keras.layers.RandomRotation(settings["rotation"], fill_mode="constant", fill_value=1.0, seed=seed))
    if settings["zoom"]:
        layers.append(keras.layers.RandomZoom(settings["zoom"], fill_mode="constant", fill_value=1.0, seed=seed))
    if settings["brightness"]:
        layers.append(keras.layers.RandomBrightness(settings["brightness"], value_range=(0.0, 1.0), seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def mean_colour(split, size, sample=200, seed=0):
    """Mean RGB in [0, 1] over a sample of the split (stored with the model for occlusion fills)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(split), size=min(sample, len(split)), replace=False)
    pixels = [load_image(split.paths[i], size).reshape(-1, 3).mean(axis=0) for i in chosen]
    return [float(v) for v in np.mean(pixels, axis=0)]
