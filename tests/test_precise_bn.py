"""Precise BN: re-estimated statistics against a direct NumPy computation."""

import keras
import numpy as np
import tensorflow as tf

from fruitkeras.layers import BatchNorm
from fruitkeras.precise_bn import recompute_batchnorm_statistics


def two_norm_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3, padding="same"),
        BatchNorm(momentum=0.9),
        keras.layers.Activation("relu"),
        keras.layers.Dropout(0.5),  # must not act: statistics are taken as inference sees the layers
        keras.layers.Conv2D(2, 3, padding="same"),
        BatchNorm(momentum=0.9),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    norms = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    norms[0].gamma.assign([1.5, 0.5, 2.0])
    norms[0].beta.assign([0.1, -0.3, 0.2])
    return model, norms


def test_statistics_are_the_average_over_batches_each_layer_seeing_normalised_input():
    model, (first, second) = two_norm_model()
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=2.0, scale=3.0, size=(8, 6, 6, 2)).astype("float32") for _ in range(5)]
    dataset = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros(40, np.int32))).batch(8)

    used = recompute_batchnorm_statistics(model, dataset, batches=4)
    assert used == 4

    conv1, conv2 = model.layers[0], model.layers[4]
    means1, vars1, means2, vars2 = [], [], [], []
    for x in batches[:4]:  # only the first four batches count
        h = np.asarray(conv1(x))
        m, v = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
        means1.append(m)
        vars1.append(v)
        h = np.maximum((h - m) / np.sqrt(v + first.epsilon) * np.asarray(first.gamma) + np.asarray(first.beta), 0)
        h = np.asarray(conv2(h))
        means2.append(h.mean(axis=(0, 1, 2)))
        vars2.append(h.var(axis=(0, 1, 2)))
    np.testing.assert_allclose(first.moving_mean, np.mean(means1, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first.moving_variance, np.mean(vars1, axis=0), rtol=1e-4)
    np.testing.assert_allclose(second.moving_mean, np.mean(means2, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(second.moving_variance, np.mean(vars2, axis=0), rtol=1e-4)


def test_nothing_but_the_statistics_changes():
    model, norms = two_norm_model()
    before = {w.path: np.asarray(w) for w in model.trainable_weights}
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((16, 6, 6, 2), np.float32), np.zeros(16, np.int32))).batch(8)
    recompute_batchnorm_statistics(model, dataset, batches=2)
    for weight in model.trainable_weights:
        np.testing.assert_array_equal(np.asarray(weight), before[weight.path])
    assert recompute_batchnorm_statistics(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), dataset, 2) == 0
