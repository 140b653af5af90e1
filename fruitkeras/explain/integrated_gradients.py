"""Integrated Gradients (Sundararajan et al. 2017): each pixel's share of the score's change
from a baseline image to the photo.

attribution_i = (x_i - x'_i) * the mean over the straight path from x' to x
of d score / d x_i, by the trapezoid rule over ``steps`` intervals.  The
score is the explained class's logit.  Per pixel the channels' attributions
are summed, keeping the sign, so the map sums (completeness) to
score(x) - score(x').  The baseline is white by default: this dataset's
background, an image with no fruit in it.
"""

import numpy as np
import tensorflow as tf

from fruitkeras.explain.class_scores import resolve_labels, scores_from
from fruitkeras.forward import compiled


def integrated_gradients(model, images, labels=None, baseline=(1.0, 1.0, 1.0), steps=64):
    """Signed attribution maps (N, H, W); ``baseline`` is an RGB colour in [0, 1] or a whole image."""
    images = np.asarray(images, dtype=np.float32)
    labels = resolve_labels(model, images, labels)
    attribution = compiled(model, ("integrated", steps), lambda proxy: _attribution_of(proxy, steps))
    maps = []
    for image, label in zip(images, labels):
        start = np.broadcast_to(np.asarray(baseline, dtype=np.float32), image.shape)
        maps.append(attribution(tf.constant(image), tf.constant(start), tf.constant(int(label))).numpy())
    return np.stack(maps).astype(np.float32)


def _attribution_of(model, steps):
    scores = scores_from(model)
    alphas = tf.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps, dtype=np.float32)
    weights[[0, -1]] /= 2  # trapezoid rule
    weights = tf.constant(weights)

    def attribution(image, start, target):
        path = start[None] + alphas[:, None, None, None] * (image - start)[None]
        with tf.GradientTape() as tape:
            tape.watch(path)
            chosen = scores(path)[:, target]
        gradients = tape.gradient(chosen, path)
        mean_gradient = tf.tensordot(weights, gradients, axes=1)
        return tf.reduce_sum((image - start) * mean_gradient, axis=-1)

    return attribution
