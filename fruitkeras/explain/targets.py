"""Which class an explanation is about, and the loss towards it."""

import numpy as np
import tensorflow as tf

PROBABILITY_FLOOR = 1e-7  # as Keras's cross-entropy clips


def class_loss(probabilities, labels):
    """Cross-entropy of each row of ``probabilities`` towards its label (TF tensors)."""
    # A one-hot product rather than a gather: gradients flow through it reliably.
    chosen = tf.reduce_sum(probabilities * tf.one_hot(labels, tf.shape(probabilities)[-1]), axis=-1)
    return -tf.math.log(tf.maximum(chosen, PROBABILITY_FLOOR))


def predict(model, images, batch_size=64):
    """Class probabilities (N, classes), batch-norm in inference mode."""
    images = np.asarray(images, dtype=np.float32)
    parts = [model(images[i : i + batch_size], training=False) for i in range(0, len(images), batch_size)]
    return np.concatenate([np.asarray(part) for part in parts])


def resolve_labels(model, images, labels=None):
    """The given labels as int32 indices, or the model's predicted classes."""
    if labels is None:
        return predict(model, images).argmax(axis=1).astype(np.int32)
    labels = np.broadcast_to(np.asarray(labels, dtype=np.int32), (len(images),))
    return np.ascontiguousarray(labels)
