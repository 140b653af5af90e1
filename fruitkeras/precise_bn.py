"""Re-estimating batch-norm statistics from clean training batches ("precise BN").

During training each BatchNorm keeps exponential moving averages of its batch
statistics.  Those averages lag the weights while they still move, and they
see augmented images that inference never gets.  Precise BN (Wu & Johnson,
"Rethinking 'Batch' in BatchNorm", 2021) replaces them by the plain average of
the statistics over a number of clean (un-augmented) training batches, each
layer seeing the batch-normalised output of the layers before it, exactly as
in a training step.
"""

import numpy as np

from fruitkeras.layers import BatchNorm


def batchnorm_layers(model):
    return [layer for layer in model.layers if isinstance(layer, BatchNorm)]


def _statistics_of(layers):
    """f(images) -> each BatchNorm's batch mean and variance, every layer seeing the output before it
    normalised with those batch statistics, as in a training step (other layers in inference mode)."""
    from fruitkeras.forward import run_layers

    def statistics(images):
        found = []
        run_layers(layers, images, batch_statistics=True, statistics=found)
        return found

    return statistics


def recompute_batchnorm_statistics(model, dataset, batches):
    """Set every BatchNorm's moving mean and variance to their average over ``batches`` batches.

    ``dataset`` yields (images, labels) batches; returns the number of batches used.
    Layers other than BatchNorm run in inference mode (no dropout).
    """
    from fruitkeras.forward import compiled

    norms = batchnorm_layers(model)
    if not norms or batches <= 0:
        return 0
    # Compiled once per model: a new tf.function each epoch would be traced again each epoch.
    statistics = compiled(model, "batchnorm_statistics", lambda proxy: _statistics_of(list(proxy.layers)))

    sums = None
    used = 0
    for images, _ in dataset.take(batches):
        found = [(np.asarray(mean, np.float64), np.asarray(variance, np.float64)) for mean, variance in statistics(images)]
        sums = found if sums is None else [(m0 + m1, v0 + v1) for (m0, v0), (m1, v1) in zip(sums, found)]
        used += 1
    for layer, (mean_sum, variance_sum) in zip(norms, sums):
        layer.moving_mean.assign((mean_sum / used).astype(np.float32))
        layer.moving_variance.assign((variance_sum / used).astype(np.float32))
    return used
