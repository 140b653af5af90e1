"""Grad-CAM (Selvaraju et al. 2017): where a conv layer's feature maps support the class.

For the explained class score y (its logit) and a layer's feature maps A_k,
each map gets the weight alpha_k = the spatial mean of dy/dA_k; the map is
ReLU(sum_k alpha_k A_k), upsampled (bilinear) to the input size.  The layer
is the last convolution by default, or ``layer`` (numbered from 1 as in the
architecture file and in error messages).
"""

import numpy as np
import tensorflow as tf

from fruitkeras.explain.targets import resolve_labels, scores_from


def feature_layer_index(model, layer=None):
    """The 0-based index in ``model.layers`` of the layer whose output Grad-CAM weighs."""
    import keras

    if layer is None:
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


def gradcam(model, images, labels=None, layer=None, batch_size=32):
    """Grad-CAM maps (N, H, W), non-negative, at the input's size."""
    images = np.asarray(images, dtype=np.float32)
    labels = resolve_labels(model, images, labels)
    index = feature_layer_index(model, layer)
    below, above = model.layers[: index + 1], scores_from(model, index + 1)
    height, width = images.shape[1:3]

    @tf.function(reduce_retracing=True)
    def maps_for(batch, targets):
        features = batch
        for item in below:
            features = item(features, training=False)
        with tf.GradientTape() as tape:
            tape.watch(features)
            scores = above(features)
            chosen = tf.reduce_sum(scores * tf.one_hot(targets, tf.shape(scores)[-1]), axis=-1)
        gradients = tape.gradient(chosen, features)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
        return tf.image.resize(cam, (height, width), method="bilinear")[..., 0]

    parts = [maps_for(tf.constant(images[i : i + batch_size]), tf.constant(labels[i : i + batch_size])).numpy()
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float32)
