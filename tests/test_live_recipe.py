"""architectures/live.json, the recipe trained in front of the examiner: valid, and it trains into a run folder."""

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from conftest import REPO
from fruitkeras.architecture import build_model, load_architecture
from fruitkeras.cli import main
from fruitkeras.explain.registry import NAMES
from fruitkeras.layers import BatchNorm
from fruitkeras.training import train_architecture

LIVE = REPO / "architectures" / "live.json"


def test_the_live_recipe_is_convolutions_dense_layers_and_our_batchnorm():
    architecture = load_architecture(LIVE)
    kinds = [kind for kind, _ in architecture.layers]
    assert {"conv", "dense", "batchnorm"} <= set(kinds)
    model = build_model(architecture, 77)
    assert any(isinstance(layer, BatchNorm) for layer in model.layers)
    assert model.output_shape == (None, 77)


def test_the_live_recipe_trains_a_tiny_run_with_the_full_log(image_folders, tmp_path):
    # bfloat16 forced, whatever this CPU would choose: the arithmetic the AMX machines train in.  A batch of 16:
    # the recipe's 128 is larger than the tiny training set, which train refuses.
    bfloat16 = ["training.mixed_precision=true", "training.batch_size=16"]
    run = train_architecture(LIVE, data=str(image_folders), run_dir=tmp_path / "live", epochs=2, verbose=0,
                             overrides=bfloat16)
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    for column in ("timestamp", "epoch_seconds", "val_accuracy", "test_accuracy"):
        assert history[column].notna().all(), column
    for name in ("model.keras", "familiarity.npz", "architecture.json", "learning_curves.png"):
        assert (run / name).is_file(), name
    # No GPU here, so bfloat16.
    assert json.loads((run / "run.json").read_text())["precision"]["policy"] == "mixed_bfloat16"

    # bfloat16 compute keeps the promise: the same seed, the same history bit for bit.
    again = train_architecture(LIVE, data=str(image_folders), run_dir=tmp_path / "again", epochs=2, verbose=0,
                               overrides=bfloat16)
    clock = ["timestamp", "epoch_seconds"]
    pd.testing.assert_frame_equal(history.drop(columns=clock), pd.read_csv(again / "history.csv").drop(columns=clock),
                                  check_exact=True)

    # The examiner picks an image: every method explains it with the bfloat16 model (the last layer is float32).
    image = sorted((image_folders / "Test").rglob("*.jpg"))[0]
    out = tmp_path / "explained"
    result = CliRunner().invoke(main, ["explain", str(image), "--model", str(run), "--method", "all", "--patch", "5",
                                       "--samples", "2", "--whole-photo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for method in NAMES:
        heatmap = np.load(next(out.glob(f"{image.stem}_{method}-*.npy")))
        assert np.isfinite(heatmap).all(), method
        if method != "gradcam":
            assert np.ptp(heatmap) > 0, method
    # Grad-CAM clips the class map at 0, so on a model this young it may be 0 everywhere: the map written must be
    # the definition's, computed here in float32 from the model's own layers.
    heatmap = np.load(next(out.glob(f"{image.stem}_gradcam-*.npy")))
    np.testing.assert_allclose(heatmap, float32_gradcam(run, image), atol=0.02 * max(heatmap.max(), 1e-6))


def float32_gradcam(run, image):
    """ReLU(sum_k mean(d logit / d A_k) A_k) at the last rectified feature maps, upsampled: Grad-CAM of the top
    class, with the gradient and the weighting in float32."""
    import keras
    import tensorflow as tf

    from fruitkeras.image_files import load_images
    from fruitkeras.runs import load_model

    model, _ = load_model(run / "model.keras", familiarity=False)
    pixels, _ = load_images([image], model.input_shape[1:3])
    last = max(number for number, layer in enumerate(model.layers)
               if isinstance(layer, keras.layers.Activation) and len(layer.output.shape) == 4)
    features = tf.constant(pixels)
    for layer in model.layers[: last + 1]:
        features = layer(features, training=False)
    with tf.GradientTape() as tape:
        tape.watch(features)
        hidden = features
        for layer in model.layers[last + 1 : -1]:
            hidden = layer(hidden, training=False)
        output = model.layers[-1]
        logits = tf.cast(hidden, tf.float32) @ output.kernel + output.bias
        score = tf.reduce_max(logits[0])
    gradients = tf.cast(tape.gradient(score, features), tf.float32)
    raw = tf.reduce_sum(tf.reduce_mean(gradients, axis=(1, 2), keepdims=True) * tf.cast(features, tf.float32), axis=-1)
    return tf.image.resize(tf.nn.relu(raw)[..., None], pixels.shape[1:3], method="bilinear")[0, ..., 0].numpy()
