"""Batch normalisation written with elementary tensor maths.

The layer normalises over every axis but the last (channels), so it serves
conv feature maps (N, H, W, C) and Dense outputs (N, C) alike.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fruitkeras")
class BatchNorm(keras.layers.Layer):
    """Per-channel batch normalisation with learnable scale and offset.

    Statistics and normalisation are computed in float32 (the variables'
    dtype) under a mixed-precision policy too: float16 sums over a batch
    overflow and lose the small variances; the output is in the compute dtype.

    Training: normalise with the batch mean and (biased) variance and move the
    moving statistics towards them by ``1 - momentum``.  Inference: normalise
    with the moving statistics.  ``y = gamma * (x - mean) / sqrt(var + eps) + beta``.

    Inference with the batch's own statistics (``fruitkeras eval
    --bn-train-mode``) is ``normalise(x, *batch_statistics(x))``, as
    ``fruitkeras.forward.run_layers`` does: a choice of the call, not a state
    of the layer.
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive, got {epsilon}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("BatchNorm needs a known channel (last) dimension")
        shape = (channels,)
        # autocast=False: read as float32 under a mixed-precision policy too (the statistics are float32).
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma", autocast=False)
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta", autocast=False)
        # Under a tf.distribute strategy each replica updates these from its own share of the batch;
        # "mean" keeps the replicas' average (the default would keep the first replica's alone).
        self.moving_mean = self.add_weight(
            shape=shape, initializer="zeros", trainable=False, name="moving_mean", aggregation="mean",
            autocast=False
        )
        self.moving_variance = self.add_weight(
            shape=shape, initializer="ones", trainable=False, name="moving_variance", aggregation="mean",
            autocast=False
        )
        self._reduction_axes = tuple(range(len(input_shape) - 1))

    def batch_statistics(self, x):
        """Per-channel mean and biased variance of ``x`` from plain sums, in float32."""
        x = ops.cast(x, self.variable_dtype)
        count = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.shape(x)[-1], x.dtype)
        mean = ops.sum(x, axis=self._reduction_axes) / count
        centred = x - mean
        variance = ops.sum(centred * centred, axis=self._reduction_axes) / count
        return mean, variance

    def call(self, inputs, training=None):
        if training:
            mean, variance = self.batch_statistics(inputs)
            keep = self.momentum
            self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
            self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return self.normalise(inputs, mean, variance)

    def normalise(self, inputs, mean, variance):
        """``gamma * (inputs - mean) / sqrt(variance + epsilon) + beta``, in the layer's compute dtype."""
        # Fold the per-channel vectors first so the full-size tensor sees one
        # multiply and one add.
        scale = self.gamma / ops.sqrt(variance + self.epsilon)
        offset = self.beta - mean * scale
        return ops.cast(ops.cast(inputs, self.variable_dtype) * scale + offset, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "epsilon": self.epsilon})
        return config
