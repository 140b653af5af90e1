"""Occlusion maps: the loss when a constant square hides each position.

For every position on a grid (every pixel at ``stride`` 1) a ``patch`` x
``patch`` square centred there is set to ``fill``; the map holds the loss of
that occluded image towards the explained class.  High values: the model
needed what was hidden there.

Speed: positions go ``batch_size`` at a time through one compiled function
(a full 100x100 map is 10,000 occluded images, never all in memory), every
batch of the same shape so that it is traced once.  By default only each
layer's window of change is recomputed (``incremental.py``); ``OcclusionEngine``
here computes every occluded copy in full, for models the shortcut cannot
take and as the reference the shortcut is tested against.
"""

import numpy as np
import tensorflow as tf

from fruitkeras.explain.class_scores import image_losses, loss_function, resolve_labels
from fruitkeras.explain.fill import DEFAULT_FILL, parse_fill
from fruitkeras.explain.registry import XLA
from fruitkeras.forward import kept_object

def grid(length, stride):
    """Patch centres along one axis: the middle of each stride-sized cell, the last cell cut at the edge.

    Cell k covers pixels k·stride .. min((k + 1)·stride, length) - 1, so the cells tile the whole axis
    whatever the stride, and every pixel of the map takes its cell's value.
    """
    starts = np.arange(0, length, stride)
    ends = np.minimum(starts + stride, length)
    return (starts + (ends - starts) // 2).astype(np.int32)


def check_geometry(patch, stride, image_size):
    """A ValueError unless the patch and the stride fit an image of ``image_size`` (H, W): a larger patch
    hides the whole image at every position and gives a constant map."""
    height, width = image_size
    for name, value in (("patch", patch), ("stride", stride)):
        if not 1 <= value <= min(height, width):
            raise ValueError(f"--{name} {value} does not fit the {height}x{width} images the model takes: "
                             f"choose 1 to {min(height, width)}")


def positions_touching(mask, patch):
    """(H, W) bool: whether the patch centred at each pixel covers any True pixel of ``mask``."""
    height, width = mask.shape
    before = patch // 2
    padded = np.zeros((height + patch, width + patch), dtype=bool)
    padded[before : before + height, before : before + width] = mask
    touches = np.zeros((height, width), dtype=bool)
    for dy in range(patch):
        for dx in range(patch):
            touches |= padded[dy : dy + height, dx : dx + width]
    return touches


class OcclusionEngine:
    """Compiled, batched occlusion for one model and one image size."""

    def __init__(self, model, image_size, patch=10, batch_size=256):
        height, width = image_size
        self.batch_size = batch_size
        before = patch // 2  # a 10-pixel patch covers centre-5 .. centre+4
        loss = loss_function(model)

        @tf.function(
            input_signature=[
                tf.TensorSpec((height, width, 3), tf.float32),
                tf.TensorSpec((), tf.int32),
                tf.TensorSpec((batch_size, 2), tf.int32),
                tf.TensorSpec((3,), tf.float32),
            ]
        )
        def occluded_losses(image, label, centres, fill):
            top = centres[:, 0:1] - before
            left = centres[:, 1:2] - before
            rows = tf.range(height)[None, :]
            columns = tf.range(width)[None, :]
            in_rows = (rows >= top) & (rows < top + patch)  # (batch, height)
            in_columns = (columns >= left) & (columns < left + patch)  # (batch, width)
            hidden = in_rows[:, :, None, None] & in_columns[:, None, :, None]
            occluded = tf.where(hidden, fill, image[None])
            return loss(occluded, tf.fill((batch_size,), label))

        self._occluded_losses = occluded_losses

    def losses(self, image, label, centres, fill, progress=None):
        """Loss for each (row, column) centre, in order."""
        results = []
        for start in range(0, len(centres), self.batch_size):
            chunk = centres[start : start + self.batch_size]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - len(chunk), axis=0)])
            results.append(self._occluded_losses(image, label, padded, fill).numpy()[: len(chunk)])
            if progress is not None:
                progress.add(len(chunk))
        return np.concatenate(results)


class _CallbackCounter:
    """Counts positions for a progress function, with the ``add`` that a terminal bar has."""

    def __init__(self, report, total):
        self.report, self.total, self.done = report, total, 0

    def add(self, count):
        self.done += count
        self.report(self.done, self.total)


def progress_counter(progress, total):
    """Something with ``add(count)`` for ``occlusion``'s ``progress`` option, or None for no progress."""
    if callable(progress):
        return _CallbackCounter(progress, total)
    if progress:
        import keras

        return keras.utils.Progbar(total, unit_name="occlusion")
    return None


def make_engine(model, image_size, patch, batch_size, incremental=True, xla=False):
    """The incremental engine where the model's first layers allow its shortcut, else the plain one.

    Engines are kept per model and settings (``fruitkeras.forward``: as long as
    the model lives), so that repeated calls (a folder of images, the web
    page) do not trace the compiled function again.
    """
    key = ("occlusion", tuple(image_size), patch, batch_size, incremental, xla)
    return kept_object(model, key, lambda proxy: _new_engine(proxy, image_size, patch, batch_size, incremental, xla))


def _new_engine(model, image_size, patch, batch_size, incremental, xla):
    if incremental:
        from fruitkeras.explain.incremental import IncrementalOcclusionEngine

        engine = IncrementalOcclusionEngine(model, image_size, patch, batch_size, xla)
        if engine.shortcut_layers:
            return engine
    return OcclusionEngine(model, image_size, patch, batch_size)


def occlusion(model, images, labels=None, patch=10, stride=1, fill=DEFAULT_FILL, batch_size=512,
              mean_colour=None, relative=False, progress=False, incremental=True, xla=XLA.default):
    """Occlusion loss maps (N, H, W); with ``stride`` > 1 each grid cell's value fills the cell.

    ``relative``: the change against the unoccluded image's loss instead.
    ``progress``: True for a terminal bar, or a function called with
    (positions done, positions in all) as batches finish (the web page's bar).
    ``incremental``: recompute only each layer's window of change
    (``fruitkeras.explain.incremental``); False: every occluded copy in full.
    Both give the same maps.  ``xla``: compile the incremental engine with
    XLA: under a second once per model and settings, then faster maps; on by
    default, as on the command line and the page (``registry.XLA``).
    Positions whose patch changes no pixel are not computed at all: their
    loss is the unoccluded one.
    """
    images = np.asarray(images, dtype=np.float32)
    height, width = images.shape[1:3]
    check_geometry(patch, stride, (height, width))
    labels = resolve_labels(model, images, labels)
    fill = parse_fill(fill, mean_colour) if isinstance(fill, str) else np.asarray(fill, np.float32)
    rows, columns = grid(height, stride), grid(width, stride)
    centres = np.stack(np.meshgrid(rows, columns, indexing="ij"), axis=-1).reshape(-1, 2)
    # A small map takes a smaller batch, except with XLA: a new batch shape would be compiled again.
    engine_batch = batch_size if xla else min(batch_size, len(centres))
    engine = make_engine(model, (height, width), patch, engine_batch, incremental, xla)
    bar = progress_counter(progress, len(images) * len(centres))
    unoccluded = image_losses(model, images, labels)
    maps = []
    for image, label, base in zip(images, labels, unoccluded):
        # A patch that changes no pixel (fill on a background of the fill's colour) leaves the loss as it is.
        changes = positions_touching((image != fill).any(axis=-1), patch)[centres[:, 0], centres[:, 1]]
        coarse = np.full(len(centres), base, dtype=np.float32)
        if changes.any():
            coarse[changes] = engine.losses(image, label, centres[changes], fill, bar)
        if bar is not None:
            bar.add(int((~changes).sum()))
        coarse = coarse.reshape(len(rows), len(columns))
        maps.append(np.repeat(np.repeat(coarse, stride, axis=0), stride, axis=1)[:height, :width])
    maps = np.stack(maps).astype(np.float32)
    if relative:
        maps -= unoccluded[:, None, None]
    return maps
