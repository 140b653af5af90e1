"""Which class an explanation is about, and the loss and scores towards it.

The functions here take layers, never keep the model (``fruitkeras.forward``
caches compiled functions per model, and a kept function must not keep its model alive).
"""

import numpy as np
import tensorflow as tf

from fruitkeras.forward import class_probabilities, compiled, in_batches, run_layers

PROBABILITY_FLOOR = 1e-7  # as Keras's cross-entropy clips


def loss_function(model):
    """f(images, labels) -> each image's cross-entropy towards its label, in TF ops.

    The loss of ``scores_from``'s scores, so that one image has one loss and
    its logits are computed in one place.  From logits (every fruitkeras model
    ends in a softmax Dense layer) it is ``softplus(logsumexp_{j != y}(z_j - z_y))``:
    through the probabilities a float32 ``p_y`` of 0.99999997 rounds to 1 and
    a confident model's loss sticks at one value, flattening occlusion maps.
    """
    scores = scores_from(model)

    def loss(images, labels):
        return loss_from_scores(scores(images), labels)

    return loss


def loss_from_scores(scores, labels):
    """Cross-entropy from ``scores_from``'s scores (from log probabilities it is -log p_y).

    From logits: ``softplus(logsumexp_{j != y}(z_j - z_y))``, which stays
    distinct where a float32 probability would round to 1.
    """
    target = tf.one_hot(labels, tf.shape(scores)[-1])
    chosen = tf.reduce_sum(scores * target, axis=-1, keepdims=True)
    others = tf.where(target > 0, -np.inf, scores - chosen)
    return tf.nn.softplus(tf.reduce_logsumexp(others, axis=-1))


def ends_in_softmax_dense(model):
    last = model.layers[-1]
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax" and hasattr(last, "kernel")


def scores_from(model, start=0):
    """f(features) -> class scores, running ``model.layers[start:]`` in inference mode.

    The score is the logit (the softmax's input) when the model ends in a
    softmax Dense layer, as every fruitkeras model does; otherwise the log
    probability.  Grad-CAM and Integrated Gradients explain this score.
    """
    layers = list(model.layers[start:])
    if not ends_in_softmax_dense(model):

        def log_probabilities(features):
            return tf.math.log(tf.maximum(run_layers(layers, features), PROBABILITY_FLOOR))

        return log_probabilities
    last = layers[-1]

    def logits(features):
        # Under mixed precision the layers before it compute in bfloat16, the last one in float32.
        features = tf.cast(run_layers(layers[:-1], features), last.kernel.dtype)
        result = tf.matmul(features, last.kernel)
        return result + last.bias if last.use_bias else result

    return logits


def image_losses(model, images, labels, batch_size=64):
    """Each image's loss towards its label, as a NumPy array."""
    loss = compiled(model, "losses", loss_function)
    images = np.asarray(images, dtype=np.float32)
    labels = resolve_labels(model, images, labels)
    return in_batches(loss, batch_size, images, labels)


def resolve_labels(model, images, labels=None):
    """The given labels as int32 indices, or the model's predicted classes."""
    if labels is None:
        return class_probabilities(model, images).argmax(axis=1).astype(np.int32)
    labels = np.broadcast_to(np.asarray(labels, dtype=np.int32), (len(images),))
    return np.ascontiguousarray(labels)
