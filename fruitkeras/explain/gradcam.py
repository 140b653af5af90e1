"""Grad-CAM (Selvaraju et al. 2017): where a conv layer's feature maps support the class.

For the explained class score y (its logit) and a layer's feature maps A_k,
each map gets the weight alpha_k = the spatial mean of dy/dA_k; the map is
ReLU(sum_k alpha_k A_k), upsampled (bilinear) to the input size.

Grad-CAM is defined on rectified feature maps, so the layer is by default
the last one with spatial maps that applies a non-linearity: in our
architectures the ReLU after the last convolution and its batch norm (a
convolution's raw output, before them, is neither normalised nor rectified).
``layer`` (numbered from 1 as in the architecture file and in error
messages) picks another.
"""

import numpy as np
import tensorflow as tf

from fruitkeras.explain.class_scores import resolve_labels, scores_from
from fruitkeras.forward import compiled, in_batches, run_layers


def feature_layer_index(model, layer=None):
    """The 0-based index in ``model.layers`` of the layer whose output Grad-CAM weighs."""
    import keras

    if layer is None:
        rectified = [i for i, item in enumerate(model.layers) if len(item.output.shape) == 4 and _rectifies(item)]
        if rectified:
            return rectified[-1]
        convolutions = [i for i, item in enumerate(model.layers) if isinstance(item, keras.layers.Conv2D)]
        if not convolutions:
            raise ValueError("Grad-CAM needs a convolution layer; this model has none")
        return convolutions[-1]
    if not 1 <= layer <= len(model.layers) - 1:
        raise ValueError(f"--layer must be between 1 and {len(model.layers) - 1} (the architecture's layers)")
    if len(model.layers[layer - 1].output.shape) != 4:
        raise ValueError(f"layer {layer} ({model.layers[layer - 1].name}) has no spatial feature maps "
                         f"(output shape {tuple(model.layers[layer - 1].output.shape)}); pick a conv or pooling layer")
    return layer - 1


def _rectifies(layer):
    """Whether a layer's output has gone through a non-linear activation (an Activation layer, or a
    convolution with one built in)."""
    import keras

    activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
    return isinstance(layer, (keras.layers.Activation, keras.layers.Conv2D)) and activation != "linear"


def gradcam(model, images, labels=None, layer=None, batch_size=32):
    """Grad-CAM maps (N, H, W), non-negative, at the input's size."""
    images = np.asarray(images, dtype=np.float32)
    labels = resolve_labels(model, images, labels)
    index = feature_layer_index(model, layer)
    height, width = images.shape[1:3]
    maps_for = compiled(model, ("gradcam", index, height, width), lambda proxy: _gradcam_of(proxy, index, height, width))
    return in_batches(lambda x, y: maps_for(tf.constant(x), tf.constant(y)), batch_size, images, labels).astype(
        np.float32)


def _gradcam_of(model, index, height, width):
    below, above = list(model.layers[: index + 1]), scores_from(model, index + 1)

    def maps_for(batch, targets):
        features = run_layers(below, batch)
        with tf.GradientTape() as tape:
            tape.watch(features)
            scores = above(features)
            chosen = tf.reduce_sum(scores * tf.one_hot(targets, tf.shape(scores)[-1]), axis=-1)
        gradients = tape.gradient(chosen, features)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
        return tf.image.resize(cam, (height, width), method="bilinear")[..., 0]

    return maps_for
