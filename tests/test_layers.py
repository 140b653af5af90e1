import keras
import numpy as np
import pytest

from fruitkeras.layers import BatchNorm


def feature_maps(seed=0, shape=(16, 6, 6, 4)):
    """Channels with very different means and spreads."""
    rng = np.random.default_rng(seed)
    means = np.array([5.0, -3.0, 0.5, 100.0])[: shape[-1]]
    stds = np.array([2.0, 0.1, 7.0, 30.0])[: shape[-1]]
    return (rng.normal(size=shape) * stds + means).astype("float32")


def test_weights_two_trainable_two_not():
    layer = BatchNorm()
    layer.build((None, 8, 8, 5))
    assert len(layer.weights) == 4
    assert [w.name for w in layer.trainable_weights] == ["gamma", "beta"]
    assert [w.name for w in layer.non_trainable_weights] == ["moving_mean", "moving_variance"]
    assert all(tuple(w.shape) == (5,) for w in layer.weights)


def test_training_output_is_standardised_per_channel():
    x = feature_maps()
    y = np.asarray(BatchNorm(epsilon=1e-6)(x, training=True))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_gamma_and_beta_scale_and_shift():
    x = feature_maps()
    layer = BatchNorm(epsilon=1e-6)
    layer.build(x.shape)
    layer.gamma.assign([2.0, 3.0, 0.5, 1.0])
    layer.beta.assign([1.0, -1.0, 0.0, 4.0])
    y = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), [1.0, -1.0, 0.0, 4.0], atol=1e-3)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), [2.0, 3.0, 0.5, 1.0], rtol=1e-3)


def test_moving_statistics_converge_on_a_fixed_stream():
    layer = BatchNorm(momentum=0.8)
    stream = [feature_maps(seed) for seed in range(60)]
    for batch in stream:
        layer(batch, training=True)
    everything = np.concatenate(stream)
    np.testing.assert_allclose(layer.moving_mean.numpy(), everything.mean(axis=(0, 1, 2)), rtol=0.05, atol=0.05)
    np.testing.assert_allclose(layer.moving_variance.numpy(), everything.var(axis=(0, 1, 2)), rtol=0.1)


def test_inference_uses_moving_statistics_and_does_not_update_them():
    x = feature_maps()
    layer = BatchNorm(epsilon=1e-3)
    layer.build(x.shape)
    layer.moving_mean.assign([1.0, 2.0, 3.0, 4.0])
    layer.moving_variance.assign([4.0, 1.0, 9.0, 16.0])
    y = np.asarray(layer(x, training=False))
    expected = (x - [1.0, 2.0, 3.0, 4.0]) / np.sqrt(np.array([4.0, 1.0, 9.0, 16.0]) + 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), [1.0, 2.0, 3.0, 4.0])


def test_training_changes_moving_statistics_by_momentum():
    x = feature_maps()
    layer = BatchNorm(momentum=0.75)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.25 * x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.75 + 0.25 * x.var(axis=(0, 1, 2)), rtol=1e-4)


def test_batch_statistics_inference_uses_the_batch_without_updating():
    from fruitkeras.forward import run_layers

    x = feature_maps()
    layer = BatchNorm(epsilon=1e-6)
    layer.build(x.shape)
    y = np.asarray(run_layers([layer], x, batch_statistics=True))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), np.zeros(4))
    np.testing.assert_array_equal(layer.moving_variance.numpy(), np.ones(4))
    # Without the flag: the moving statistics (0 and 1), whatever ran before.
    np.testing.assert_allclose(run_layers([layer], x), x / np.sqrt(1 + 1e-6), rtol=1e-6)


@pytest.mark.parametrize("shape", [(16, 6, 6, 4), (32, 4)])
def test_agrees_with_keras_batch_normalization(shape):
    """Keras's own layer is the reference here (the package never uses it)."""
    ours = BatchNorm(momentum=0.9, epsilon=1e-3)
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    for seed in range(5):
        x = feature_maps(seed, shape)
        np.testing.assert_allclose(ours(x, training=True), reference(x, training=True), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean.numpy(), reference.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), reference.moving_variance.numpy(), rtol=1e-5)
    x = feature_maps(99, shape)
    np.testing.assert_allclose(ours(x, training=False), reference(x, training=False), rtol=1e-4, atol=1e-4)


def test_gradients_match_keras_batch_normalization():
    import tensorflow as tf

    x = tf.constant(feature_maps())
    grads = []
    for layer in (BatchNorm(), keras.layers.BatchNormalization()):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(layer(x, training=True)))
        grads.append(tape.gradient(loss, [x] + layer.trainable_weights))
    for ours, reference in zip(*grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("shape", [(16, 6, 6, 4), (32, 3)])
@pytest.mark.parametrize("compiled", [True, False])
def test_the_closed_form_gradient_is_autodiffs_to_rounding(shape, compiled):
    """In a tf.function as fit runs it, and eagerly: the same outputs and statistics as autodiff bit for bit, and
    gradients as close to float64's (Keras's own layer in float64) as autodiff's are."""
    import tensorflow as tf

    x = feature_maps(shape=shape)
    results = []
    for layer, dtype in ((BatchNorm(momentum=0.5, gradient="closed_form"), "float32"),
                         (BatchNorm(momentum=0.5), "float32"),
                         (keras.layers.BatchNormalization(momentum=0.5, dtype="float64"), "float64")):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, shape[-1]).astype(dtype))  # away from 1, so gamma counts

        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.sin(y) * tf.range(1.0, y.shape[-1] + 1.0, dtype=y.dtype))
            return y, tape.gradient(loss, [x] + layer.trainable_weights)

        y, gradients = (tf.function(step) if compiled else step)(tf.constant(x.astype(dtype)))
        results.append((y, [np.asarray(g, np.float64) for g in gradients], layer.moving_mean.numpy(),
                        layer.moving_variance.numpy()))
    (closed, closed_grads, *closed_stats), (auto, auto_grads, *auto_stats), (_, exact, *_) = results
    np.testing.assert_array_equal(closed, auto)
    for ours, theirs in zip(closed_stats, auto_stats):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs, reference in zip(closed_grads, auto_grads, exact):
        scale = np.abs(reference).max()
        np.testing.assert_allclose(ours, reference, atol=1e-4 * scale)
        assert np.abs(ours - reference).max() <= 2 * np.abs(theirs - reference).max() + 1e-7 * scale


def test_the_closed_form_gradient_under_bfloat16():
    import tensorflow as tf

    x = tf.constant(feature_maps())
    gradients = []
    for gradient in ("closed_form", "autodiff"):
        layer = BatchNorm(gradient=gradient, dtype="mixed_bfloat16")
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(tf.cast(x, "bfloat16"), training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") ** 2 * tf.range(1.0, 5.0))
        assert y.dtype == "bfloat16"
        gradients.append(tape.gradient(loss, [x] + layer.trainable_weights))
    for ours, theirs in zip(*gradients):
        assert ours.dtype == theirs.dtype
        np.testing.assert_allclose(np.asarray(ours, "float32"), np.asarray(theirs, "float32"), rtol=0.05, atol=0.05)


def test_after_dense_layers_normalises_each_unit_over_the_batch():
    """(N, C) inputs: statistics over the batch axis alone, as Keras's own layer computes them."""
    x = feature_maps(shape=(32, 4))
    ours, reference = BatchNorm(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    np.testing.assert_allclose(ours(x, training=True), reference(x, training=True), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, rtol=1e-5)
    np.testing.assert_allclose(ours.moving_variance, reference.moving_variance, rtol=1e-4)
    np.testing.assert_allclose(ours(x, training=False), reference(x, training=False), rtol=1e-4, atol=1e-4)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), BatchNorm(momentum=0.7, epsilon=1e-2), keras.layers.Flatten()]
    )
    for seed in range(3):  # move the statistics away from their initial values
        model(feature_maps(seed, (8, 8, 8, 3)), training=True)
    path = tmp_path / "bn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.layers[1]
    assert isinstance(layer, BatchNorm)
    assert (layer.momentum, layer.epsilon) == (0.7, 1e-2)
    x = feature_maps(7, (5, 8, 8, 3))
    np.testing.assert_array_equal(model(x, training=False), loaded(x, training=False))
    np.testing.assert_array_equal(model.layers[1].moving_variance.numpy(), layer.moving_variance.numpy())


def test_config_round_trip():
    layer = BatchNorm(momentum=0.5, epsilon=0.1, gradient="closed_form", name="bn")
    clone = BatchNorm.from_config(layer.get_config())
    assert (clone.momentum, clone.epsilon, clone.gradient, clone.name) == (0.5, 0.1, "closed_form", "bn")
    # A file saved before the option existed has no "gradient": it loads with the gradient it was trained with.
    config = layer.get_config()
    del config["gradient"]
    assert BatchNorm.from_config(config).gradient == "autodiff"


@pytest.mark.parametrize("kwargs", [{"momentum": 1.0}, {"momentum": -0.1}, {"epsilon": 0.0}, {"gradient": "fast"}])
def test_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        BatchNorm(**kwargs)


def test_package_uses_no_library_batch_norm():
    """The assignment: our layer, plain tensor maths only."""
    from pathlib import Path

    import fruitkeras

    forbidden = ("BatchNormalization", "batch_normalization", "tf.nn.moments", "ops.moments", "fused_batch_norm")
    for path in Path(fruitkeras.__file__).parent.rglob("*.py"):
        text = path.read_text()
        for word in forbidden:
            assert word not in text, f"{path} mentions {word}"
