"""Stateless augmentation: independent streams, keyed on (seed, epoch, batch), the same whatever the threads."""

import os

import numpy as np
import pytest
import tensorflow as tf

from fruitkeras import augmentation
from fruitkeras import data as datalib

EVERYTHING = {"flip": True, "rotation": 0.1, "zoom": 0.2, "brightness": 0.2, "hue": 0.1, "saturation": 0.3}


def pipeline_parameters(settings, seed=0, batches=313, batch_size=32):
    """Every image's parameters over ``batches`` batches, drawn with the keys the training pipeline uses."""
    drawn = [augmentation.draw_parameters(settings, augmentation.batch_key(seed, epoch, number), batch_size)
             for epoch in range(2) for number in range(batches // 2 + 1)]
    return {name: np.concatenate([np.asarray(d[name]) for d in drawn]) for name in drawn[0]}


def test_each_transformation_draws_independently():
    parameters = pipeline_parameters(EVERYTHING)
    names = list(parameters)
    assert len(parameters["zoom"]) >= 10_000
    values = np.stack([parameters[name] for name in names])
    correlations = np.corrcoef(values)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert abs(correlations[i, j]) < 0.05, (names[i], names[j], correlations[i, j])


def test_parameters_span_their_ranges():
    parameters = pipeline_parameters(EVERYTHING)
    assert set(np.unique(parameters["flip_x"])) == {-1.0, 1.0}
    assert 0.45 < np.mean(parameters["flip_y"] < 0) < 0.55
    angle = 0.1 * 2 * np.pi
    assert -angle <= parameters["angle"].min() < -0.9 * angle and 0.9 * angle < parameters["angle"].max() <= angle
    assert 0.8 <= parameters["zoom"].min() < 0.82 and 1.18 < parameters["zoom"].max() <= 1.2
    off = pipeline_parameters({**EVERYTHING, "flip": False, "zoom": 0.0}, batches=4)
    assert (off["flip_x"] == 1).all() and (off["zoom"] == 1).all()


def test_keys_differ_by_seed_epoch_and_batch_and_repeat():
    keys = {tuple(np.asarray(augmentation.batch_key(seed, epoch, batch)))
            for seed in range(3) for epoch in range(3) for batch in range(3)}
    assert len(keys) == 27
    np.testing.assert_array_equal(augmentation.batch_key(5, 2, 7), augmentation.batch_key(5, 2, 7))


def asymmetric_images(count=4, size=9):
    images = np.ones((count, size, size, 3), np.float32)
    images[:, 1:4, 1:6] = [0.9, 0.2, 0.1]  # a red bar in the top left corner
    images[:, 6, 2] = [0.1, 0.2, 0.9]
    return images


def parameters_for(count, **given):
    identity = {"flip_x": 1.0, "flip_y": 1.0, "angle": 0.0, "zoom": 1.0, "hue": 0.0, "saturation": 1.0,
                "brightness": 0.0}
    return {name: tf.fill((count,), float(given.get(name, value))) for name, value in identity.items()}


def test_flips_mirror_the_image_exactly():
    images = asymmetric_images()
    geometry = {**EVERYTHING, "hue": 0.0, "saturation": 0.0, "brightness": 0.0}
    same = augmentation.apply(tf.constant(images), parameters_for(4), geometry)
    np.testing.assert_allclose(same, images, atol=1e-6)
    mirrored = augmentation.apply(tf.constant(images), parameters_for(4, flip_x=-1.0), geometry)
    np.testing.assert_allclose(mirrored, images[:, :, ::-1], atol=1e-6)
    upside_down = augmentation.apply(tf.constant(images), parameters_for(4, flip_y=-1.0), geometry)
    np.testing.assert_allclose(upside_down, images[:, ::-1], atol=1e-6)


def test_quarter_turn_and_zoom_out_fill_with_white():
    images = asymmetric_images()
    geometry = {**EVERYTHING, "hue": 0.0, "saturation": 0.0, "brightness": 0.0}
    turned = augmentation.apply(tf.constant(images), parameters_for(4, angle=np.pi / 2), geometry).numpy()
    # A quarter turn moves every pixel to another place on the grid: one of the two rotations of the array.
    assert min(np.abs(turned - np.rot90(images, k, axes=(1, 2))).max() for k in (1, 3)) < 1e-4
    zoomed = augmentation.apply(tf.constant(images), parameters_for(4, zoom=2.0), geometry).numpy()
    np.testing.assert_allclose(zoomed[:, 0, 0], 1.0)  # read from outside the image: the white background
    np.testing.assert_allclose(zoomed[:, 4, 4], images[:, 4, 4], atol=1e-6)  # the centre stays


def test_colour_jitter_keeps_white_background_white():
    settings = {"flip": False, "rotation": 0.0, "zoom": 0.0, "brightness": 0.0, "hue": 0.5, "saturation": 0.5}
    augment = augmentation.make_augmenter(settings)
    batch = np.ones((8, 6, 6, 3), np.float32)
    batch[:, 2:4, 2:4] = [0.8, 0.1, 0.1]  # a red fruit on white
    out = augment(tf.constant(batch), augmentation.batch_key(0, 0, 0)).numpy()
    np.testing.assert_allclose(out[:, 0, 0], 1.0, atol=1e-6)
    assert np.ptp(out[:, 2, 2, 1]) > 0.05  # the fruit's colour did change between images
    assert augmentation.make_augmenter(None) is None
    assert augmentation.make_augmenter({name: 0 for name in settings}) is None


def test_pipeline_augments_each_batch_with_its_own_key(image_folders):
    """What the training pipeline yields is the plain batch transformed by the parameters of
    (seed, epoch, batch number): nothing else random enters."""
    split = datalib.read_split(image_folders / "Training", (16, 16))  # 36 images
    augment = augmentation.make_augmenter(EVERYTHING)
    augmented = list(datalib.make_dataset(split, 8, shuffle=True, seed=3, augmenter=augment, repeat=True).take(9))
    plain = list(datalib.make_dataset(split, 8, shuffle=True, seed=3, repeat=True).take(9))
    steps_per_epoch = 36 // 8
    for step, ((images, labels), (clean, clean_labels)) in enumerate(zip(augmented, plain)):
        np.testing.assert_array_equal(labels, clean_labels)
        epoch, number = divmod(step, steps_per_epoch)
        expected = augment(clean, augmentation.batch_key(3, epoch, number))
        np.testing.assert_allclose(images, expected, atol=1e-5)  # graph and eager round differently
    assert not np.allclose(augmented[0][0], plain[0][0])


@pytest.mark.parametrize("threads", [1, 4])
def test_stream_does_not_depend_on_the_thread_count(image_folders, monkeypatch, threads):
    split = datalib.read_split(image_folders / "Training", (16, 16))
    augment = augmentation.make_augmenter(EVERYTHING)

    def stream():
        dataset = datalib.make_dataset(split, 8, shuffle=True, seed=1, augmenter=augment, repeat=True)
        return np.concatenate([images.numpy() for images, _ in dataset.take(8)])

    reference = stream()
    monkeypatch.setattr(os, "cpu_count", lambda: threads)
    np.testing.assert_array_equal(stream(), reference)


COMPOSITING = {"flip": False, "rotation": 0.0, "zoom": 0.0, "brightness": 0.0, "hue": 0.0, "saturation": 0.0,
               "background": 0.5, "zoom_out": 0.0}


def disc_on_white(size=40, radius=12):
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2
    image = np.ones((size, size, 3), np.float32)
    image[disc] = (0.7, 0.1, 0.2)
    return image, disc


def test_compositing_keeps_the_fruit_and_replaces_the_white_background():
    image, disc = disc_on_white()
    batch = tf.constant(np.stack([image, image]))
    parameters = augmentation.draw_parameters(COMPOSITING, augmentation.batch_key(0, 0, 0), 2)
    parameters["composited"] = tf.constant([1.0, 0.0])  # the first laid on a background, the second not
    out = augmentation.apply(batch, parameters, COMPOSITING).numpy()

    mask = augmentation.fruit_mask(batch).numpy()[0, ..., 0]
    np.testing.assert_array_equal(mask == 1.0, disc)  # the mask is the fruit, exactly
    np.testing.assert_array_equal(mask == 0.0, ~disc)
    np.testing.assert_array_equal(out[0][disc], image[disc])  # fruit pixels kept
    background = augmentation.make_backgrounds(parameters, 40, 40).numpy()[0]
    np.testing.assert_allclose(out[0][~disc], background[~disc], atol=1e-6)  # the white replaced ...
    assert np.abs(out[0][~disc] - 1.0).mean() > 0.05  # ... by something that is not white
    assert background.std(axis=(0, 1)).max() > 0.02  # and not one flat colour
    np.testing.assert_array_equal(out[1], image)  # an image not drawn for compositing stays as it was


def test_zoom_out_shrinks_and_moves_only_the_composited_fruit():
    image, disc = disc_on_white()
    settings = dict(COMPOSITING, zoom_out=0.5)
    parameters = augmentation.draw_parameters(settings, augmentation.batch_key(0, 0, 1), 2)
    parameters.update(composited=tf.constant([1.0, 0.0]), scale=tf.constant([0.5, 1.0]),
                      shift_x=tf.constant([0.2, 0.0]), shift_y=tf.constant([-0.1, 0.0]))
    out = augmentation.apply(tf.constant(np.stack([image, image])), parameters, settings).numpy()
    red = (out[..., 0] > 0.6) & (out[..., 1] < 0.2) & (out[..., 2] < 0.3)
    assert abs(red[0].sum() / disc.sum() - 0.25) < 0.05  # half the size: a quarter of the area
    rows, columns = np.nonzero(red[0])
    assert abs(columns.mean() - (19.5 + 0.2 * 40)) < 1 and abs(rows.mean() - (19.5 - 0.1 * 40)) < 1
    np.testing.assert_array_equal(out[1], image)


def test_architecture_files_switch_compositing_on_by_name(architecture_file):
    from fruitkeras.architecture import load_architecture
    from fruitkeras.errors import FruitkerasError

    source = {"name": "c", "input": {"height": 32, "width": 32}, "layers": [{"type": "global_avg_pool"}],
              "training": {"augmentation": {"background": 0.5, "zoom_out": 0.6}}}
    settings = load_architecture(architecture_file(source)).training["augmentation"]
    assert settings["background"] == 0.5 and settings["zoom_out"] == 0.6
    source["training"]["augmentation"]["zoom_out"] = 1.5
    with pytest.raises(FruitkerasError, match="zoom_out"):
        load_architecture(architecture_file(source))
