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

    ``gradient``: how training differentiates the normalisation.  "autodiff"
    leaves it to TensorFlow, op by op; "closed_form" writes the known result,
    ``dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat))``, in fewer passes
    over the full-size tensor (8% of a float32 training step of the live recipe,
    about 4% of its epoch).  The two agree to rounding, not bit for bit, so a file keeps the
    one its logged histories were trained with.
    """

    GRADIENTS = ("autodiff", "closed_form")

    def __init__(self, momentum=0.99, epsilon=1e-3, gradient="autodiff", **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive, got {epsilon}")
        if gradient not in self.GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(self.GRADIENTS)}, got {gradient}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.gradient = gradient
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
        if not training:
            return self.normalise(inputs, self.moving_mean, self.moving_variance)
        if self.gradient == "closed_form":
            # Read here, as tensors: a variable read inside the custom gradient would make eager TensorFlow ask
            # the gradient function for the variables' gradients apart.
            outputs, mean, variance = self._normalise_batch(inputs, ops.copy(self.gamma), ops.copy(self.beta))
        else:
            mean, variance = self.batch_statistics(inputs)
            outputs = self.normalise(inputs, mean, variance)
        keep = self.momentum
        self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
        self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
        return outputs

    def _normalise_batch(self, inputs, gamma, beta):
        """``normalise(inputs, *batch_statistics(inputs))`` and the statistics, differentiated in closed form."""

        @ops.custom_gradient
        def normalised(x, gamma, beta):
            x = ops.cast(x, self.variable_dtype)  # once: batch_statistics' own cast is then none
            mean, variance = self.batch_statistics(x)
            count = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.shape(x)[-1], x.dtype)
            # The forward values are normalise()'s own, bit for bit: the same sums, the same operations.
            std = ops.sqrt(variance + self.epsilon)
            scale = gamma / std
            outputs = ops.cast(x * scale + (beta - mean * scale), self.compute_dtype)

            def gradient(*upstream, **_):
                dy = ops.cast(upstream[0], x.dtype)  # the statistics' upstream is nothing: they only feed assign
                x_hat = (x - mean) / std
                d_beta = ops.sum(dy, axis=self._reduction_axes)
                d_gamma = ops.sum(dy * x_hat, axis=self._reduction_axes)
                dx = scale * (dy - (d_beta + x_hat * d_gamma) / count)
                return ops.cast(dx, inputs.dtype), d_gamma, d_beta

            return (outputs, ops.stop_gradient(mean), ops.stop_gradient(variance)), gradient

        return normalised(inputs, gamma, beta)

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
        config.update({"momentum": self.momentum, "epsilon": self.epsilon, "gradient": self.gradient})
        return config
