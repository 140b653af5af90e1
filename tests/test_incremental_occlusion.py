"""Incremental occlusion against full re-inference, on architectures of every kind the JSON allows."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from fruitkeras.architecture import build_model, parse_architecture
from fruitkeras.precision import Precision, policy_scope
from fruitkeras.explain.occlusion import occlusion
from fruitkeras.explain.incremental import IncrementalOcclusionEngine, plan
from fruitkeras.layers import BatchNorm


def layers_model(size, layers, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((size, size, 3)), *layers, keras.layers.Dense(4, activation="softmax")])
    for layer in model.layers:  # batch norm with statistics that are not the identity
        if isinstance(layer, BatchNorm):
            channels = layer.gamma.shape[0]
            rng = np.random.default_rng(seed)
            layer.moving_mean.assign(rng.normal(0, 0.5, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels).astype("float32"))
    return model


ARCHITECTURES = {
    "vgg-like: strided 'same' conv, batch norm, max pooling": lambda: layers_model(24, [
        keras.layers.Conv2D(4, 5, strides=2, padding="same", use_bias=False), BatchNorm(),
        keras.layers.Activation("relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(6, 3, padding="same"), BatchNorm(), keras.layers.Activation("relu"),
        keras.layers.MaxPooling2D(2), keras.layers.GlobalAveragePooling2D()]),
    "'valid' conv with stride 3, average pooling, 'same' max pooling, flatten": lambda: layers_model(23, [
        keras.layers.Conv2D(5, 4, strides=3, padding="valid", activation="elu"),
        keras.layers.AveragePooling2D(2, strides=1), keras.layers.MaxPooling2D(3, strides=2, padding="same"),
        keras.layers.Dropout(0.5), keras.layers.Flatten()]),
    "odd sizes, 'same' average pooling ends the shortcut": lambda: layers_model(21, [
        keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="tanh"),
        keras.layers.AveragePooling2D(2, padding="same"), keras.layers.Conv2D(3, 3), keras.layers.Flatten()]),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("patch, stride", [(5, 1), (4, 3)])
def test_maps_equal_full_reinference(name, patch, stride):
    model = ARCHITECTURES[name]()
    images = np.random.default_rng(1).random((2, *model.input_shape[1:])).astype(np.float32)
    images[1, :, :6] = 1.0  # a white band, as Fruits-360 backgrounds
    fast = occlusion(model, images, [0, 3], patch=patch, stride=stride, fill=(1.0, 1.0, 1.0), batch_size=37)
    full = occlusion(model, images, [0, 3], patch=patch, stride=stride, fill=(1.0, 1.0, 1.0), batch_size=37,
                     incremental=False)
    assert IncrementalOcclusionEngine(model, images.shape[1:3], patch, 37).shortcut_layers > 0
    span = full.max() - full.min()
    np.testing.assert_allclose(fast, full, atol=1e-4 * span)


def test_the_shipped_architecture_at_full_size():
    path = Path(__file__).resolve().parent.parent / "architectures" / "vgg_small.json"
    model = build_model(parse_architecture(json.loads(path.read_text()), path), 5)
    image = np.random.default_rng(2).random((1, 100, 100, 3)).astype(np.float32)
    fast = occlusion(model, image, [1], patch=10, stride=3)
    compiled = occlusion(model, image, [1], patch=10, stride=3, xla=True)
    full = occlusion(model, image, [1], patch=10, stride=3, incremental=False)
    np.testing.assert_allclose(fast, full, atol=1e-4 * (full.max() - full.min()))
    np.testing.assert_allclose(compiled, full, atol=1e-4 * (full.max() - full.min()))
    steps, resume_at = plan(model, (100, 100), 10)
    # The shortcut runs through the first three blocks; the last conv's 6x6 map changes everywhere.
    assert [step.kind for step in steps].count("conv") == 3 and resume_at == 12


def test_the_live_architecture_in_bfloat16():
    """live.json computes in bfloat16 with a float32 last layer: the shortcut pastes float32 image tiles into
    bfloat16 windows, and its maps are the full re-inference's."""
    path = Path(__file__).resolve().parent.parent / "architectures" / "live.json"
    keras.utils.set_random_seed(3)  # the same weights whatever ran before in this process
    with policy_scope(Precision("mixed_bfloat16", True, "this test")):
        model = build_model(parse_architecture(json.loads(path.read_text()), path), 5)
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[-1].compute_dtype == "float32"
    image = np.random.default_rng(3).random((1, 80, 80, 3)).astype(np.float32)
    full = occlusion(model, image, [2], patch=10, stride=4, incremental=False)
    span = full.max() - full.min()
    assert IncrementalOcclusionEngine(model, (80, 80), 10, 8).shortcut_layers > 0
    np.testing.assert_allclose(occlusion(model, image, [2], patch=10, stride=4, xla=False), full, atol=1e-2 * span)
    # Compiled (the default), XLA fuses the engine's bfloat16 steps and rounds some otherwise.
    np.testing.assert_allclose(occlusion(model, image, [2], patch=10, stride=4), full, atol=5e-2 * span)


def test_a_model_without_a_shortcut_falls_back_to_full_inference():
    model = layers_model(8, [keras.layers.Flatten()])
    assert IncrementalOcclusionEngine(model, (8, 8), 3, 16).shortcut_layers == 0
    image = np.random.default_rng(0).random((1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(occlusion(model, image, [0], patch=3), occlusion(model, image, [0], patch=3,
                                                                                 incremental=False), rtol=1e-6)


def test_positions_whose_patch_changes_nothing_keep_the_unoccluded_loss():
    from fruitkeras.explain.class_scores import image_losses

    model = ARCHITECTURES["vgg-like: strided 'same' conv, batch norm, max pooling"]()
    image = np.ones((1, 24, 24, 3), np.float32)
    image[0, 14:20, 14:20] = [0.8, 0.2, 0.1]  # a small fruit in one corner of a white photo
    maps = occlusion(model, image, [2], patch=4, fill=(1.0, 1.0, 1.0))
    full = occlusion(model, image, [2], patch=4, fill=(1.0, 1.0, 1.0), incremental=False)
    np.testing.assert_allclose(maps, full, atol=1e-4 * (full.max() - full.min()))
    np.testing.assert_allclose(maps[0, :8, :8], image_losses(model, image, [2])[0], rtol=1e-6)
