"""Explanation methods on tiny real TensorFlow models."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import picture
from fruitkeras.cli import main
from fruitkeras.explain import METHODS
from fruitkeras.explain.registry import METHOD, ExplainOptions
from fruitkeras.explain.gradient import gradient_saliency
from fruitkeras.explain.occlusion import occlusion
from fruitkeras.explain.smoothgrad import smoothgrad
from fruitkeras.explain.gradient import loss_gradients, reduce_channels
from fruitkeras.explain.fill import parse_fill
from fruitkeras.explain.occlusion import positions_touching
from fruitkeras.explain.class_scores import image_losses
from fruitkeras.image_files import load_images
from fruitkeras.layers import BatchNorm
from fruitkeras.runs import load_model


def smooth_model(seed=0, size=12, classes=3):
    """Conv + our BatchNorm + tanh: differentiable everywhere, for finite differences."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Conv2D(4, 3, padding="same"),
        BatchNorm(),
        keras.layers.Activation("tanh"),
        keras.layers.Flatten(),
        keras.layers.Dense(classes, activation="softmax"),
    ])
    bn = model.layers[1]
    bn.moving_mean.assign(np.linspace(-0.2, 0.3, 4))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 4))
    return model


def region_model(size=16, rows=(4, 8), columns=(10, 14)):
    """Two classes decided by the mean brightness of one region alone."""
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Cropping2D(((rows[0], size - rows[1]), (columns[0], size - columns[1]))),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.layers[-1].set_weights([np.array([[1.0, -1.0]] * 3), np.array([-0.75, 0.75])])
    return model


def random_images(count, size=12, seed=0):
    return np.random.default_rng(seed).random((count, size, size, 3)).astype(np.float32)


def loss_of(model, image, label):
    probabilities = model(image[None], training=False).numpy()[0]
    return -np.log(probabilities[label].astype(np.float64))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_has_the_same_signature_and_explains_the_label_it_is_given(name):
    model = smooth_model()
    images = random_images(3)
    options = {"samples": 4} if name == "smoothgrad" else {"batch_size": 32, "patch": 3} if name == "occlusion" else {}
    predicted = model(images, training=False).numpy().argmax(axis=1)
    heatmaps = METHODS[name](model, images, None, **options)
    assert heatmaps.shape == (3, 12, 12) and heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all() and (np.ptp(heatmaps, axis=(1, 2)) > 0).all()  # not constant
    # labels=None explains the predicted classes; another class gets another map.
    np.testing.assert_allclose(heatmaps, METHODS[name](model, images, predicted, **options), rtol=1e-5, atol=1e-7)
    other = (predicted + 1) % 3
    assert not np.allclose(heatmaps, METHODS[name](model, images, other, **options))


def test_gradient_matches_finite_differences():
    model = smooth_model()
    image = random_images(1, seed=3)
    label = np.array([2], np.int32)
    gradient = loss_gradients(model, image, label)[0]
    step = 1e-2
    for row, column, channel in [(0, 0, 0), (5, 6, 1), (11, 3, 2), (7, 7, 0), (2, 9, 1)]:
        plus, minus = image[0].copy(), image[0].copy()
        plus[row, column, channel] += step
        minus[row, column, channel] -= step
        estimate = (loss_of(model, plus, 2) - loss_of(model, minus, 2)) / (2 * step)
        assert gradient[row, column, channel] == pytest.approx(estimate, rel=0.05, abs=2e-4)


def test_gradient_saliency_reduces_channels():
    model = smooth_model()
    images = random_images(2)
    raw = loss_gradients(model, images, np.array([0, 1], np.int32))
    np.testing.assert_allclose(gradient_saliency(model, images, [0, 1]), np.abs(raw).max(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(gradient_saliency(model, images, [0, 1], reduce="l2"), np.linalg.norm(raw, axis=-1), rtol=1e-5)
    with pytest.raises(ValueError):
        reduce_channels(raw, "median")


def test_default_label_is_the_predicted_class():
    model = smooth_model()
    images = random_images(4)
    predicted = model(images, training=False).numpy().argmax(axis=1)
    np.testing.assert_array_equal(gradient_saliency(model, images), gradient_saliency(model, images, predicted))


def test_smoothgrad_without_noise_is_the_gradient():
    model = smooth_model()
    images = random_images(2)
    np.testing.assert_allclose(smoothgrad(model, images, [0, 1], samples=3, noise=0.0),
                               gradient_saliency(model, images, [0, 1]), rtol=1e-5, atol=1e-8)


def test_occlusion_peaks_where_the_model_looks():
    model = region_model()
    image = np.full((1, 16, 16, 3), 0.8, np.float32)
    heatmap = occlusion(model, image, [0], patch=3, fill="black")[0]
    base = loss_of(model, image[0], 0)
    peak_row, peak_column = np.unravel_index(heatmap.argmax(), heatmap.shape)
    assert 4 <= peak_row < 8 and 10 <= peak_column < 14
    assert heatmap.max() > base + 0.1
    # A patch centred more than one pixel outside the region hides none of it.
    far = np.ones_like(heatmap, dtype=bool)
    far[3:9, 9:15] = False
    np.testing.assert_allclose(heatmap[far], base, rtol=1e-5)


def test_relative_occlusion_is_the_change_against_the_unoccluded_loss():
    model = region_model()
    image = np.full((1, 16, 16, 3), 0.8, np.float32)
    absolute = occlusion(model, image, [0], patch=3, fill="black")[0]
    change = occlusion(model, image, [0], patch=3, fill="black", relative=True)[0]
    np.testing.assert_allclose(change, absolute - loss_of(model, image[0], 0), atol=1e-6)
    assert change.min() == pytest.approx(0.0, abs=1e-6)


def test_occlusion_fill_equal_to_image_changes_nothing():
    model = region_model()
    image = np.full((1, 16, 16, 3), 1.0, np.float32)
    heatmap = occlusion(model, image, [0], patch=4, fill="white")[0]
    np.testing.assert_allclose(heatmap, loss_of(model, image[0], 0), rtol=1e-5)


def naive_occlusion(model, image, label, patch, fill):
    """The definition, one image at a time with a NumPy mask: the reference."""
    height, width = image.shape[:2]
    result = np.zeros((height, width))
    for row in range(height):
        for column in range(width):
            occluded = image.copy()
            top, left = row - patch // 2, column - patch // 2
            occluded[max(top, 0) : max(top + patch, 0), max(left, 0) : max(left + patch, 0)] = fill
            result[row, column] = loss_of(model, occluded, label)
    return result


def test_batched_occlusion_equals_unbatched_definition():
    model = smooth_model(size=10)
    image = random_images(1, size=10, seed=5)
    batched = occlusion(model, image, [1], patch=4, fill="grey", batch_size=64)[0]
    reference = naive_occlusion(model, image[0], 1, 4, 0.5)
    np.testing.assert_allclose(batched, reference, atol=1e-5)


def test_batch_norm_inference_makes_occlusion_independent_of_batch_size():
    model = smooth_model()
    image = random_images(1, seed=9)
    maps = [occlusion(model, image, [0], patch=5, fill="black", batch_size=size)[0] for size in (1, 7, 144)]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    np.testing.assert_allclose(maps[0], maps[2], atol=1e-5)


def test_stride_gives_a_coarse_map_of_full_size():
    model = smooth_model()
    image = random_images(1)
    fine = occlusion(model, image, [0], patch=3)[0]
    coarse = occlusion(model, image, [0], patch=3, stride=4)[0]
    assert coarse.shape == (12, 12)
    # Each 4x4 cell holds the value measured at its centre.
    np.testing.assert_allclose(coarse[0:4, 4:8], fine[2, 6], atol=1e-5)
    np.testing.assert_allclose(coarse[8:12, 0:4], fine[10, 2], atol=1e-5)


def cell_centre(pixel, stride, length):
    """The centre of the stride cell holding ``pixel``; the last cell is cut at the edge."""
    start = pixel // stride * stride
    return start + (np.minimum(start + stride, length) - start) // 2


@pytest.fixture(scope="module")
def stride_case():
    """A 23x19 model, an image and its one-position-at-a-time occlusion map (patch 5, black): computed once for
    both engines."""
    height, width = 23, 19
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((height, width, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    image = np.random.default_rng(1).random((1, height, width, 3)).astype(np.float32)
    return model, image, naive_occlusion(model, image[0], 2, 5, 0.0)


@pytest.mark.parametrize("incremental", [True, False])
def test_every_stride_maps_every_pixel_to_its_cells_centre(incremental, stride_case):
    """Strides 1 to 20 on a 23x19 image (most leave a partial cell at the edge) against the definition,
    one position at a time."""
    model, image, reference = stride_case
    height, width = image.shape[1:3]
    rows, columns = np.arange(height), np.arange(width)
    for stride in range(1, 20):
        heatmap = occlusion(model, image, [2], patch=5, stride=stride, fill="black", incremental=incremental)[0]
        assert heatmap.shape == (height, width), stride
        expected = reference[np.ix_(cell_centre(rows, stride, height), cell_centre(columns, stride, width))]
        np.testing.assert_allclose(heatmap, expected, atol=1e-5, err_msg=f"stride {stride}")
    with pytest.raises(ValueError, match="does not fit the 23x19 images"):
        occlusion(model, image, [2], patch=5, stride=20)


@pytest.mark.parametrize("patch", [0, 20, 1000])
def test_a_patch_larger_than_the_image_is_refused(patch):
    model = smooth_model()
    with pytest.raises(ValueError, match=f"--patch {patch} does not fit the 12x12 images the model takes: "
                                         "choose 1 to 12"):
        occlusion(model, random_images(1), [0], patch=patch)


@pytest.mark.parametrize("patch", [1, 2, 3, 4, 10])
def test_positions_touching_matches_patch_placement(patch):
    mask = np.random.default_rng(patch).random((13, 11)) > 0.93
    expected = np.zeros_like(mask)
    for row in range(13):
        for column in range(11):
            top, left = row - patch // 2, column - patch // 2
            expected[row, column] = mask[max(top, 0) : max(top + patch, 0), max(left, 0) : max(left + patch, 0)].any()
    np.testing.assert_array_equal(positions_touching(mask, patch), expected)


@pytest.mark.parametrize(
    "text, expected",
    [("white", [1, 1, 1]), ("Grey", [0.5] * 3), ("black", [0, 0, 0]), ("0.25", [0.25] * 3), ("1,0,0.5", [1, 0, 0.5]), ("mean", [0.2, 0.3, 0.4])],
)
def test_parse_fill(text, expected):
    np.testing.assert_allclose(parse_fill(text, mean_colour=[0.2, 0.3, 0.4]), expected)


@pytest.mark.parametrize("text", ["purple", "2", "1,2", "-0.1", "0.1,0.2,x"])
def test_parse_fill_rejects(text):
    with pytest.raises(ValueError):
        parse_fill(text)


def test_loss_stays_precise_for_a_confident_model():
    """-log p from logits: distinct losses where float32 probabilities round to 1."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.layers[0].set_weights([np.eye(3), np.zeros(3)])
    logits = np.array([[20.0, 0, 0], [25.0, 0, 0], [0, 100.0, 0], [1.0, 2.0, 3.0]], np.float32)
    labels = np.array([0, 0, 0, 2], np.int32)
    expected = [np.log1p(np.exp(np.delete(row, label).astype(np.float64) - row[label]).sum())
                for row, label in zip(logits, labels)]
    np.testing.assert_allclose(image_losses(model, logits, labels), expected, rtol=1e-5)
    assert image_losses(model, logits[:1], [0])[0] != image_losses(model, logits[1:2], [0])[0]


def test_gradient_is_traced_through_tensorflow():
    """The saliency comes from a tf.GradientTape over the model, not a NumPy stand-in."""
    model = smooth_model()
    images = tf.constant(random_images(1))
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = -tf.math.log(model(images, training=False)[:, 0])
    np.testing.assert_allclose(gradient_saliency(model, images.numpy(), [0]), tf.reduce_max(tf.abs(tape.gradient(loss, images)), -1), rtol=1e-5)


# Command line ---------------------------------------------------------------------

def write_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((50, 40, 3), np.uint8)
    rgb[10:30, 10:30] = (200, 30, 30)
    Image.fromarray(rgb).save(folder / "red.jpg")
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")  # grayscale, odd size
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24] = (30, 160, 40, 255)
    Image.fromarray(rgba).save(folder / "clear.png")  # transparent background
    return [folder / "red.jpg", folder / "grey.png", folder / "clear.png"]


def only(folder, pattern):
    """The one file in ``folder`` matching ``pattern``."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_cli_writes_figures_and_maps(trained_run, runner, tmp_path):
    """Each saved map is the method's own map of the image as training reads it, for the class the line names."""
    images = write_images(tmp_path / "in")
    out = tmp_path / "out"
    result = runner.invoke(main, ["explain", *map(str, images), "--method", "all", "--model", str(trained_run["run_dir"]),
                                  "--out", str(out), "--patch", "5", "--samples", "3", "--whole-photo"])
    assert result.exit_code == 0, result.output
    model, metadata = load_model(trained_run["model"])
    classes = metadata["class_names"]
    # Each image's prediction, its verdict and the class explained are printed.
    labels = []
    for image in images:
        line = re.search(rf"^{re.escape(str(image))}: predicted (cherry|kiwi|plum) \([0-9.]+%\), "
                         rf"verdict: (known|unknown class|unfamiliar photo) \(familiarity [0-9.-]+\), "
                         rf"explaining '(cherry|kiwi|plum)'$", result.output, re.M)
        assert line, result.output
        labels.append(classes.index(line.group(3)))
    pixels, _ = load_images(images, model.input_shape[1:3])
    options = ExplainOptions(patch=5, samples=3)
    for method in METHODS:
        arguments = METHOD[method].options(options, metadata.get("mean_colour"))
        expected = METHOD[method].load()(model, pixels, np.array(labels, np.int32), **arguments)
        for number, stem in enumerate(("red", "grey", "clear")):
            heatmap = np.load(only(out, f"{stem}_{method}-*.npy"))
            np.testing.assert_allclose(heatmap, expected[number], rtol=1e-4, atol=1e-6 * np.abs(expected).max(),
                                       err_msg=f"{stem} {method}")
            width, height, colours = picture(only(out, f"{stem}_{method}-*.png"))
            assert width > 2 * height and colours > 100  # three panels: photo, heatmap with its scale, overlay
        assert only(out, f"grid_{method}-*.png").exists()
        assert re.search(rf"^{method}: 3 image\(s\) in [0-9.]+ s \([0-9.]+ s per image\)$", result.output, re.M)


def test_file_names_record_the_options_so_nothing_is_overwritten(trained_run, runner, tmp_path):
    image = write_images(tmp_path / "in")[0]
    out = tmp_path / "out"
    base = ["explain", str(image), "--model", str(trained_run["run_dir"]), "--out", str(out), "--method", "occlusion"]
    for extra in ([], ["--fill", "grey"], ["--patch", "4"], ["--stride", "2"], ["--delta"]):
        assert runner.invoke(main, base + extra).exit_code == 0
    names = sorted(path.name for path in out.glob("red_occlusion-*.npy"))
    assert names == ["red_occlusion-p10-s1-grey-loss.npy", "red_occlusion-p10-s1-white-delta-loss.npy",
                     "red_occlusion-p10-s1-white-loss.npy", "red_occlusion-p10-s2-white-loss.npy", "red_occlusion-p4-s1-white-loss.npy"]
    for reduce in ("max", "l2"):
        assert runner.invoke(main, base[:-1] + ["gradient", "--reduce", reduce]).exit_code == 0
    assert (out / "red_gradient-max-loss.npy").exists() and (out / "red_gradient-l2-loss.npy").exists()
    # The last word says what the map explains: Grad-CAM and IG the class score, SmoothGrad what it smooths.
    for method, word in (("gradcam", "logit"), ("integrated", "logit"), ("gradxinput", "loss")):
        assert runner.invoke(main, base[:-1] + [method]).exit_code == 0
        assert only(out, f"red_{method}-*.npy").stem.endswith(f"-{word}"), method
    assert runner.invoke(main, base[:-1] + ["smoothgrad", "--smooth", "gradcam", "--samples", "2"]).exit_code == 0
    assert only(out, "red_smoothgrad-*.npy").stem.endswith("-logit")


def test_folders_and_globs_are_expanded(trained_run, runner, tmp_path):
    folder = tmp_path / "in"
    write_images(folder)
    out = tmp_path / "out"
    result = runner.invoke(main, ["explain", str(folder), str(folder / "*.png"), "--model", str(trained_run["run_dir"]),
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*_gradient-max-loss.npy")) == [
        "clear_gradient-max-loss.npy", "grey_gradient-max-loss.npy", "red_gradient-max-loss.npy"]


def test_cli_label_and_fill_options(trained_run, runner, tmp_path):
    images = write_images(tmp_path / "in")[:1]
    out = tmp_path / "out"
    args = ["explain", str(images[0]), "--model", str(trained_run["model"]), "--out", str(out), "--method", "occlusion",
            "--label", "kiwi", "--fill", "mean", "--stride", "4"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    absolute = np.load(only(out, "red_occlusion-p10-s4-mean*.npy"))
    assert absolute.shape == (32, 32)
    result = runner.invoke(main, args + ["--delta"])
    assert result.exit_code == 0, result.output
    change = np.load(only(out, "red_occlusion-p10-s4-mean-delta*.npy"))
    assert not np.allclose(change, absolute)
    np.testing.assert_allclose(absolute - change, (absolute - change)[0, 0], rtol=1e-4)  # one constant shift


def test_cli_uses_newest_run_by_default(trained_run, runner, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained_run["run_dir"], tmp_path / "runs" / "only")
    images = write_images(tmp_path / "in")[:1]
    result = runner.invoke(main, ["explain", str(images[0])])
    assert result.exit_code == 0, result.output
    assert "runs/only/model.keras" in result.output
    assert (tmp_path / "explanations" / "red_gradient-max-loss.npy").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label", "banana"], "unknown --label 'banana'"),
        (["--fill", "purple"], "fill must be"),
        (["--baseline", "purple"], "baseline must be"),
        (["--method", "gradcam", "--layer", "99"], "--layer must be between 1 and"),
        (["--method", "gradcam", "--layer", "5"], "has no spatial feature maps"),
        (["--model", "nowhere"], "no such model file"),
        (["--method", "occlusion", "--patch", "1000"], "--patch 1000 does not fit the 32x32 images"),
        (["--method", "occlusion", "--stride", "40"], "--stride 40 does not fit the 32x32 images"),
    ],
)
def test_cli_bad_options_are_one_line(trained_run, runner, tmp_path, extra, message):
    images = write_images(tmp_path / "in")[:1]
    args = ["explain", str(images[0]), "--out", str(tmp_path / "o")]
    if "--model" not in extra:
        args += ["--model", str(trained_run["run_dir"])]
    result = runner.invoke(main, args + extra)
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert message in result.output


def test_cli_bad_images_are_one_line(trained_run, runner, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    for path, message in ((text, "not an image file"), (tmp_path / "gone.jpg", "no such file")):
        result = runner.invoke(main, ["explain", str(path), "--model", str(trained_run["run_dir"]), "--out", str(tmp_path / "o")])
        assert result.exit_code == 1 and message in result.output
        assert result.output.count("\n") == 1


def test_cli_unknown_method_is_refused_in_one_line(runner):
    result = runner.invoke(main, ["explain", "x.jpg", "--method", "magic"])
    assert result.exit_code == 2
    assert result.output.startswith("error: Invalid value for '--method': 'magic' is not one of")
    assert result.output.endswith("(see: main explain --help)\n") and result.output.count("\n") == 1
