"""Incremental occlusion (Nakandala, Kumar, Papakonstantinou, SIGMOD 2019).

A patch changes only a window of each layer's output, its projective field.
The unoccluded image's activations are computed once; for each batch of
patch positions only those windows are recomputed, each layer from the
window of its input (the cached activations with the previous layer's new
window pasted in), until the window covers the whole map or a layer has no
shortcut.  From there the batch runs the rest of the model on full maps, the
cached activations with the window pasted in.

Shortcuts exist for convolutions (any kernel, stride, 'same' or 'valid'
padding, no dilation), max pooling, 'valid' average pooling, and layers that
act on each position alone (batch norm in inference, activations, dropout).
Anything else simply ends the shortcut there, so every model gets exact maps.
"""

import keras
import numpy as np
import tensorflow as tf

from fruitkeras.explain.class_scores import loss_from_scores, scores_from
from fruitkeras.architecture import as_pair
from fruitkeras.forward import run_layers
from fruitkeras.layers import BatchNorm

POINTWISE = (BatchNorm, keras.layers.Activation, keras.layers.Dropout, keras.layers.ReLU)


class Step:
    """One layer on the shortcut: how it slides and how big its window of change is."""

    def __init__(self, layer, kind, kernel, stride, pad, in_size, out_size, tile):
        self.layer, self.kind = layer, kind
        self.kernel, self.stride, self.pad = kernel, stride, pad  # (rows, columns) each; pad: before
        self.in_size, self.out_size, self.tile = in_size, out_size, tile

    @property
    def window(self):
        """The input window one output tile needs."""
        return tuple((t - 1) * s + k for t, s, k in zip(self.tile, self.stride, self.kernel))


def _sliding(layer):
    """(kind, kernel, stride, padding) of a layer with a shortcut that slides, else None."""
    if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
        if as_pair(layer.dilation_rate) != (1, 1) or layer.groups != 1:
            return None
        return "conv", as_pair(layer.kernel_size), as_pair(layer.strides), layer.padding
    if isinstance(layer, keras.layers.MaxPooling2D):
        return "maxpool", as_pair(layer.pool_size), as_pair(layer.strides), layer.padding
    if isinstance(layer, keras.layers.AveragePooling2D) and layer.padding == "valid":
        return "avgpool", as_pair(layer.pool_size), as_pair(layer.strides), "valid"
    return None


def _changed(start, end, kernel, stride, pad, out_size):
    """Output indices [start, end) that see input indices [start, end) of a sliding layer."""
    first = max(0, -((-(start + pad - kernel + 1)) // stride))
    last = min(out_size - 1, (end - 1 + pad) // stride)
    return first, last + 1


def plan(model, image_size, patch):
    """The shortcut steps for ``model`` and ``patch``, and the index of the first layer run in full."""
    size = tuple(image_size)
    tile = tuple(min(patch, n) for n in size)
    steps = []
    for index, layer in enumerate(model.layers):
        if isinstance(layer, POINTWISE):
            steps.append(Step(layer, "pointwise", (1, 1), (1, 1), (0, 0), size, size, tile))
            continue
        sliding = _sliding(layer)
        if sliding is None:
            return steps, index
        kind, kernel, stride, padding = sliding
        out = tuple(layer.output.shape[1:3])
        if padding == "same":
            pad = tuple(max((o - 1) * s + k - n, 0) // 2 for o, s, k, n in zip(out, stride, kernel, size))
        else:
            pad = (0, 0)
        new_tile = []
        for axis in range(2):
            widest = 0
            for start in range(0, size[axis] - tile[axis] + 1):
                first, end = _changed(start, start + tile[axis], kernel[axis], stride[axis], pad[axis], out[axis])
                widest = max(widest, end - first)
            new_tile.append(min(widest, out[axis]))
        if all(t >= o for t, o in zip(new_tile, out)):  # the change reaches every output: nothing to save
            return steps, index
        steps.append(Step(layer, kind, kernel, stride, pad, size, out, tuple(new_tile)))
        size, tile = out, tuple(new_tile)
    return steps, len(model.layers)


def _gather_window(maps, top, left, height, width):
    """(B, height, width, C) windows of (H, W, C) ``maps`` at per-item corners ``top``, ``left`` (B,)."""
    rows = top[:, None] + tf.range(height)[None]
    columns = left[:, None] + tf.range(width)[None]
    return tf.gather(tf.gather(maps, rows), columns, axis=2, batch_dims=1)


def _paste(windows, tiles, top, left):
    """``windows`` (B, h, w, C) with ``tiles`` (B, th, tw, C) laid in at per-item offsets (may overhang)."""
    height, width = tf.shape(windows)[1], tf.shape(windows)[2]
    tile_height, tile_width = tf.shape(tiles)[1], tf.shape(tiles)[2]
    rows = tf.range(height)[None] - top[:, None]
    columns = tf.range(width)[None] - left[:, None]
    inside = ((rows >= 0) & (rows < tile_height))[:, :, None, None] & ((columns >= 0) & (columns < tile_width))[:, None, :, None]
    tiles = tf.cast(tiles, windows.dtype)  # the image's float32 tile into a bfloat16 layer's windows
    spread = tf.gather(tiles, tf.clip_by_value(rows, 0, tile_height - 1), axis=1, batch_dims=1)
    spread = tf.gather(spread, tf.clip_by_value(columns, 0, tile_width - 1), axis=2, batch_dims=1)
    return tf.where(inside, spread, windows)


class IncrementalOcclusionEngine:
    """Occlusion losses by incremental inference; same interface as ``occlusion.OcclusionEngine``.

    ``shortcut_layers`` is how many layers take the shortcut (0: none, the
    caller should use the plain engine).  ``xla``: compile each batch's work
    with XLA.
    """

    def __init__(self, model, image_size, patch=10, batch_size=256, xla=False):
        self.model, self.batch_size, self.patch = model, batch_size, patch
        self.steps, self.resume_at = plan(model, image_size, patch)
        self.shortcut_layers = len(self.steps)
        self.image_size = tuple(image_size)
        if not self.steps:
            return
        steps, resume_at, before = self.steps, self.resume_at, patch // 2
        rest = scores_from(model, resume_at)
        height, width = self.image_size

        def padded(maps, step):
            """The cached input of a sliding step, padded as the layer pads (zeros; -inf for max pooling)."""
            extra = [max((o - 1) * s + k - n - p, 0) for o, s, k, n, p in
                     zip(step.out_size, step.stride, step.kernel, step.in_size, step.pad)]
            value = maps.dtype.min if step.kind == "maxpool" else 0.0
            return tf.pad(maps, [[step.pad[0], extra[0]], [step.pad[1], extra[1]], [0, 0]], constant_values=value)

        def run(step, windows):
            layer = step.layer
            if step.kind == "conv":
                # In the layer's compute dtype, as its own call would autocast (bfloat16 under mixed precision).
                dtype = layer.compute_dtype
                out = tf.nn.conv2d(tf.cast(windows, dtype), tf.cast(layer.kernel, dtype), strides=[1, *step.stride, 1],
                                   padding="VALID")
                if layer.use_bias:
                    out += tf.cast(layer.bias, dtype)
                return layer.activation(out)
            if step.kind == "maxpool":
                return tf.nn.max_pool2d(windows, step.kernel, step.stride, "VALID")
            if step.kind == "avgpool":
                return tf.nn.avg_pool2d(windows, step.kernel, step.stride, "VALID")
            return run_layers([layer], windows)

        def occluded_losses(image, caches, label, centres, offsets, fill):
            # offsets: (B, steps + 1, 2) top-left corners of each layer's window of change.
            top, left = centres[:, 0] - before, centres[:, 1] - before
            tile_top, tile_left = offsets[:, 0, 0], offsets[:, 0, 1]
            tile = _gather_window(image, tile_top, tile_left, min(patch, height), min(patch, width))
            rows = tile_top[:, None] + tf.range(min(patch, height))[None] - top[:, None]
            columns = tile_left[:, None] + tf.range(min(patch, width))[None] - left[:, None]
            hidden = ((rows >= 0) & (rows < patch))[:, :, None, None] & ((columns >= 0) & (columns < patch))[:, None, :, None]
            tile = tf.where(hidden, fill, tile)
            for number, step in enumerate(steps, start=1):
                corner = offsets[:, number]
                if step.kind == "pointwise":
                    tile = run(step, tile)
                    continue
                window_top, window_left = corner[:, 0] * step.stride[0], corner[:, 1] * step.stride[1]
                windows = _gather_window(padded(caches[number - 1], step), window_top, window_left, *step.window)
                previous = offsets[:, number - 1]
                windows = _paste(windows, tile, previous[:, 0] + step.pad[0] - window_top,
                                 previous[:, 1] + step.pad[1] - window_left)
                tile = run(step, windows)
            last = offsets[:, len(steps)]
            full = tf.repeat(caches[len(steps)][None], tf.shape(tile)[0], axis=0)
            full = _paste(full, tile, last[:, 0], last[:, 1])
            return loss_from_scores(rest(full), tf.fill(tf.shape(centres)[:1], label))

        # XLA fuses the many small gathers, pastes and selects of a batch into a few loops: 1.7x faster per
        # map here, after a compilation of a few seconds (worth it for many maps, or a server).
        self._occluded_losses = tf.function(occluded_losses, jit_compile=True if xla else None,
                                            reduce_retracing=True)

        @tf.function
        def activations(image):
            maps, features = [image], image[None]
            for step in steps:
                features = run_layers([step.layer], features)
                maps.append(features[0])
            return maps

        self._activations = activations

    def offsets(self, centres):
        """(N, steps + 1, 2) corners of each layer's window of change for each centre."""
        before = self.patch // 2
        height, width = self.image_size
        result = np.zeros((len(centres), len(self.steps) + 1, 2), np.int32)
        for axis, limit in enumerate((height, width)):
            start = np.clip(centres[:, axis] - before, 0, limit)
            end = np.clip(centres[:, axis] - before + self.patch, 0, limit)
            tile = min(self.patch, limit)
            result[:, 0, axis] = np.clip(centres[:, axis] - before, 0, limit - tile)
            for number, step in enumerate(self.steps, start=1):
                if step.kind != "pointwise":
                    first = np.maximum(0, -((-(start + step.pad[axis] - step.kernel[axis] + 1)) // step.stride[axis]))
                    last = np.minimum(step.out_size[axis] - 1, (end - 1 + step.pad[axis]) // step.stride[axis])
                    start, end = first, last + 1
                result[:, number, axis] = np.clip(start, 0, step.out_size[axis] - step.tile[axis])
        return result

    def losses(self, image, label, centres, fill, progress=None):
        """Loss for each (row, column) centre, in order."""
        image = tf.constant(image, tf.float32)
        caches = self._activations(image)
        fill = tf.constant(fill, tf.float32)
        label = tf.constant(int(label), tf.int32)
        results = []
        for start in range(0, len(centres), self.batch_size):
            chunk = np.asarray(centres[start : start + self.batch_size], np.int32)
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - len(chunk), axis=0)])
            values = self._occluded_losses(image, caches, label, tf.constant(padded), tf.constant(self.offsets(padded)),
                                           fill)
            results.append(values.numpy()[: len(chunk)])
            if progress is not None:
                progress.add(len(chunk))
        return np.concatenate(results)
