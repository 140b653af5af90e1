"""Gradient maps: how the loss changes with each input pixel (tf.GradientTape).

``gradient_saliency`` is the plain gradient, ``gradient_x_input`` weighs it
by the pixel values (``smoothgrad.py`` averages either over noisy copies).  Channels are reduced by max |.| or the L2 norm.
"""

import numpy as np
import tensorflow as tf

from fruitkeras.explain.class_scores import loss_function, resolve_labels
from fruitkeras.forward import compiled, in_batches

REDUCTIONS = ("max", "l2")


def reduce_channels(values, reduce="max"):
    """(N, H, W, C) -> (N, H, W): max absolute value or L2 norm over channels."""
    if reduce == "max":
        return np.abs(values).max(axis=-1)
    if reduce == "l2":
        return np.sqrt(np.square(values).sum(axis=-1))
    raise ValueError(f"unknown channel reduction '{reduce}' (known: {', '.join(REDUCTIONS)})")


def loss_gradient_function(model):
    """The compiled f(images, labels) -> d loss / d images, made once per model."""
    return compiled(model, "loss_gradients", _loss_gradients_of)


def _loss_gradients_of(model):
    loss = loss_function(model)

    def gradients(images, labels):
        with tf.GradientTape() as tape:
            tape.watch(images)
            # Each image's loss depends on that image only, so the gradient of
            # the sum gives every image its own gradient.
            total = tf.reduce_sum(loss(images, labels))
        return tape.gradient(total, images)

    return gradients


def loss_gradients(model, images, labels, batch_size=32):
    """Raw input gradients (N, H, W, 3) of each image's loss towards its label."""
    images = np.asarray(images, dtype=np.float32)
    gradients = loss_gradient_function(model)
    return in_batches(lambda x, y: gradients(tf.constant(x), tf.constant(y)), batch_size, images, labels)


def gradient_saliency(model, images, labels=None, reduce="max", batch_size=32):
    """|d loss / d pixel|, reduced over channels."""
    labels = resolve_labels(model, images, labels)
    return reduce_channels(loss_gradients(model, images, labels, batch_size), reduce)


def gradient_x_input(model, images, labels=None, reduce="max", batch_size=32):
    """Gradient times pixel value, reduced over channels."""
    labels = resolve_labels(model, images, labels)
    images = np.asarray(images, dtype=np.float32)
    return reduce_channels(loss_gradients(model, images, labels, batch_size) * images, reduce)
