"""Grad-CAM and Integrated Gradients against hand computations."""

import keras
import numpy as np
import pytest

from fruitkeras.explain import METHODS
from fruitkeras.explain.gradcam import gradcam
from fruitkeras.explain.integrated_gradients import integrated_gradients
from fruitkeras.explain.class_scores import scores_from
from fruitkeras.layers import BatchNorm


def hand_model():
    """A 1x1 conv making maps A0 = x and A1 = -x, global average pooling, a known Dense layer."""
    model = keras.Sequential([
        keras.Input((4, 4, 1)),
        keras.layers.Conv2D(2, 1, use_bias=False),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.layers[0].kernel.assign(np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2))
    model.layers[2].kernel.assign(np.array([[2.0, 0.0], [1.0, 3.0]], np.float32))
    model.layers[2].bias.assign([0.5, -0.5])
    return model


def test_gradcam_equals_the_hand_computation():
    model = hand_model()
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 1)).astype(np.float32)
    # class c: alpha_k = W[k, c] / 16 (mean over 16 positions), cam = relu(sum_k alpha_k A_k)
    expected = {0: np.maximum((2.0 * x - 1.0 * x) / 16, 0)[..., 0], 1: np.maximum((0.0 * x - 3.0 * x) / 16, 0)[..., 0]}
    for label in (0, 1):
        np.testing.assert_allclose(gradcam(model, x, [label] * 3), expected[label], rtol=1e-5, atol=1e-7)


def test_gradcam_layer_choice_and_upsampling():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same"),
        BatchNorm(),
        keras.layers.Activation("relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    images = np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)
    default, pooled = gradcam(model, images), gradcam(model, images, layer=4)
    assert default.shape == pooled.shape == (2, 8, 8) and (default >= 0).all() and (pooled >= 0).all()
    # The default is the last rectified maps (layer 3, the ReLU); layer 5 is a conv without activation.
    np.testing.assert_allclose(default, gradcam(model, images, layer=3), rtol=1e-6)
    assert not np.allclose(default, gradcam(model, images, layer=5))
    assert not np.allclose(default, gradcam(model, images, layer=1))
    with pytest.raises(ValueError, match="no spatial feature maps"):
        gradcam(model, images, layer=6)
    with pytest.raises(ValueError, match="between 1 and 6"):
        gradcam(model, images, layer=9)


def test_integrated_gradients_is_exact_for_a_linear_score():
    model = keras.Sequential([keras.Input((3, 3, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    weights = np.asarray(model.layers[-1].kernel)
    image = np.random.default_rng(0).random((1, 3, 3, 3)).astype(np.float32)
    attribution = integrated_gradients(model, image, [1], baseline=(1.0, 1.0, 1.0), steps=4)[0]
    expected = ((image[0] - 1.0).reshape(-1) * weights[:, 1]).reshape(3, 3, 3).sum(axis=-1)
    np.testing.assert_allclose(attribution, expected, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_completeness_within_one_percent_at_64_steps():
    """A smooth network (tanh, average pooling), so only the integration is tested;
    tests/test_real_data.py checks the same on the shipped ReLU model."""
    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(6, 3, padding="same", activation="tanh"),
        BatchNorm(),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(6, 3, padding="same", activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    images = np.random.default_rng(5).random((3, 12, 12, 3)).astype(np.float32)
    baseline = np.ones_like(images[0])
    score = scores_from(model)
    for label in range(3):
        maps = integrated_gradients(model, images, [label] * 3, steps=64)
        change = np.asarray(score(images))[:, label] - np.asarray(score(baseline[None]))[0, label]
        assert np.all(np.abs(maps.sum(axis=(1, 2)) - change) <= 0.01 * np.abs(change) + 1e-6), (maps.sum(axis=(1, 2)), change)


def test_default_layer_is_after_batch_norm_and_relu_in_the_shipped_architectures():
    """Grad-CAM is defined on rectified feature maps: in vgg_small the ReLU after the last conv and its batch
    norm (layer 15 of the file), not the conv's raw output (layer 13)."""
    from conftest import REPO
    from fruitkeras.architecture import build_model, load_architecture
    from fruitkeras.explain.gradcam import feature_layer_index

    for name in ("vgg_small", "vgg_wide"):
        architecture = load_architecture(REPO / "architectures" / f"{name}.json")
        model = build_model(architecture, 5)
        index = feature_layer_index(model)
        kinds = [kind for kind, _ in architecture.layers]
        last_conv = max(i for i, kind in enumerate(kinds) if kind == "conv")
        assert kinds[last_conv + 1 : last_conv + 3] == ["batchnorm", "activation"]
        assert index == last_conv + 2, (name, index)
        assert isinstance(model.layers[index], keras.layers.Activation)


def test_gradcam_on_rectified_maps_equals_the_hand_computation():
    """A conv, our BatchNorm and a ReLU: the map weighs the rectified maps the ReLU outputs."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3, padding="same", use_bias=False),
        BatchNorm(),
        keras.layers.Activation("relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    bn = model.layers[1]
    bn.moving_mean.assign([0.1, -0.2, 0.3])
    bn.moving_variance.assign([0.5, 1.5, 2.0])
    x = np.random.default_rng(6).normal(size=(2, 6, 6, 2)).astype(np.float32)
    rectified = x
    for layer in model.layers[:3]:
        rectified = np.asarray(layer(rectified, training=False))
    weights = np.asarray(model.layers[-1].kernel)  # logit_c = mean over positions of A_k, times W[k, c]
    for label in (0, 1):
        alpha = weights[:, label] / 36.0
        expected = np.maximum((rectified * alpha).sum(axis=-1), 0.0)
        np.testing.assert_allclose(gradcam(model, x, [label, label]), expected, rtol=1e-5, atol=1e-7)


def test_both_follow_the_common_signature():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    predicted = model(x, training=False).numpy().argmax(axis=1)
    for name in ("gradcam", "integrated"):
        maps = METHODS[name](model, x)  # labels=None: the predicted classes
        assert maps.shape == (2, 4, 4) and maps.dtype == np.float32
        np.testing.assert_allclose(maps, METHODS[name](model, x, predicted), rtol=1e-6)
        assert not np.allclose(maps, METHODS[name](model, x, 1 - predicted))
