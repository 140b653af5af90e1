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


def test_flips_alone_take_the_mirror_path_and_give_the_warped_pixels():
    """Flips with no rotation or zoom skip the resampling; the images are those the warp would give."""
    images = asymmetric_images()
    parameters = parameters_for(4)
    parameters["flip_x"] = tf.constant([1.0, -1.0, 1.0, -1.0])
    parameters["flip_y"] = tf.constant([1.0, 1.0, -1.0, -1.0])
    flips_only = {**EVERYTHING, "rotation": 0.0, "zoom": 0.0, "hue": 0.0, "saturation": 0.0, "brightness": 0.0}
    mirrored = augmentation.apply(tf.constant(images), parameters, flips_only).numpy()
    np.testing.assert_array_equal(mirrored, augmentation.warp(tf.constant(images), parameters).numpy())
    np.testing.assert_array_equal(mirrored[3], images[3, ::-1, ::-1])
    np.testing.assert_array_equal(mirrored[0], images[0])


def test_transpose_swaps_the_chosen_images_and_with_flips_gives_all_eight_right_angle_orientations():
    images = asymmetric_images(count=8)
    parameters = parameters_for(8)
    parameters["flip_x"] = tf.constant([1.0, -1.0] * 4)
    parameters["flip_y"] = tf.constant([1.0, 1.0, -1.0, -1.0] * 2)
    parameters["transpose"] = tf.constant([0.0] * 4 + [1.0] * 4)
    settings = {"flip": True, "rotation": 0.0, "zoom": 0.0, "brightness": 0.0, "hue": 0.0, "saturation": 0.0,
                "transpose": True}
    oriented = augmentation.apply(tf.constant(images), parameters, settings).numpy()
    for number in range(8):
        expected = images[number, :: int(parameters["flip_y"][number]), :: int(parameters["flip_x"][number])]
        if number >= 4:
            expected = expected.transpose(1, 0, 2)
        np.testing.assert_array_equal(oriented[number], expected)
    # The eight are the dihedral group: each of the array's four rotations and their mirror images, once.
    orientations = [np.rot90(images[0], k) for k in range(4)]
    orientations += [o[:, ::-1] for o in orientations]
    found = [next(k for k, known in enumerate(orientations) if np.array_equal(o, known)) for o in oriented]
    assert sorted(found) == list(range(8))
    drawn = pipeline_parameters({**settings, "rotation": 0.1}, batches=40)
    assert 0.45 < drawn["transpose"].mean() < 0.55
    assert abs(np.corrcoef(drawn["transpose"], drawn["flip_x"])[0, 1]) < 0.1


def test_flips_and_swaps_run_on_the_uint8_photos_with_the_float_pipelines_values():
    """make_dataset orients the uint8 photos before scaling them when nothing but pixels moves: the batches are
    the ones orienting the scaled floats gives, bit for bit."""
    moves = augmentation.make_augmenter({"flip": True, "transpose": True, "rotation": 0.0, "zoom": 0.0,
                                         "brightness": 0.0, "hue": 0.0, "saturation": 0.0})
    assert moves.moves_pixels_only
    assert not augmentation.make_augmenter({**EVERYTHING, "transpose": True}).moves_pixels_only
    photos = np.random.default_rng(4).integers(0, 256, (24, 9, 9, 3), dtype=np.uint8)
    split = datalib.Split([f"{n}.jpg" for n in range(24)], np.arange(24) % 3, ["a", "b", "c"], [],
                          datalib.aligned_zeros(photos.shape))
    split.images[...] = photos
    stream = datalib.make_dataset(split, 8, shuffle=True, seed=7, augmenter=moves, repeat=True, first_epoch=1)
    order = datalib.make_dataset(split, 8, shuffle=True, seed=7, repeat=True, first_epoch=1)
    for number, ((oriented, labels), (plain, same_labels)) in enumerate(zip(stream.take(3), order.take(3))):
        np.testing.assert_array_equal(labels, same_labels)
        expected = moves(plain, augmentation.batch_key(7, 1, number))  # the float path: scale, then orient
        np.testing.assert_array_equal(oriented.numpy(), expected.numpy())
        assert oriented.dtype == tf.float32


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


def test_augmentation_can_start_at_a_later_epoch(image_folders):
    """Before ``augment_from_epoch`` the batches are the plain ones; from it on, each is the plain batch
    augmented with its own key, as when augmenting from the start."""
    split = datalib.read_split(image_folders / "Training", (16, 16))  # 36 images, 4 batches an epoch
    augment = augmentation.make_augmenter(EVERYTHING)
    late = list(datalib.make_dataset(split, 8, shuffle=True, seed=3, augmenter=augment, repeat=True,
                                     augment_from_epoch=2).take(12))
    early = list(datalib.make_dataset(split, 8, shuffle=True, seed=3, augmenter=augment, repeat=True).take(12))
    plain = list(datalib.make_dataset(split, 8, shuffle=True, seed=3, repeat=True).take(12))
    for step in range(8):  # epochs 0 and 1
        np.testing.assert_array_equal(late[step][0], plain[step][0])
    for step in range(8, 12):  # epoch 2 on
        np.testing.assert_array_equal(late[step][0], early[step][0])
        assert not np.allclose(late[step][0], plain[step][0])


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
    # The fruit kept, less its outermost ring of pixels (the edge blended with the studio's white).
    padded = np.pad(disc, 1)
    inner = np.all([padded[1 + dy: 41 + dy, 1 + dx: 41 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    np.testing.assert_array_equal(augmentation.shrink_mask(tf.constant(disc[None, ..., None], tf.float32)).numpy()[
        0, ..., 0] == 1.0, inner)
    assert inner.sum() > 0.75 * disc.sum()  # one ring of a radius-12 disc, no more
    np.testing.assert_array_equal(out[0][inner], image[inner])  # fruit pixels kept
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
    # Half the radius, less the one-pixel ring at the edge that compositing leaves out.
    assert abs(red[0].sum() / disc.sum() - (12 / 2 - 1) ** 2 / 12**2) < 0.03
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


OUTSIDE = {"flip": True, "rotation": 0.1, "zoom": 0.1, "brightness": 0.2, "hue": 0.0, "saturation": 0.2,
           "background": 0.7, "zoom_out": 0.7, "specimens": 0.5, "temperature": 0.15, "occlusion": 0.3,
           "blur": 0.3, "noise": 0.05, "exposure": 0.4, "stretch": 0.2}
ONLY = {"flip": False, "rotation": 0.0, "zoom": 0.0, "brightness": 0.0, "hue": 0.0, "saturation": 0.0}


def test_photo_effects_draw_independently_of_each_other_and_of_the_rest():
    parameters = pipeline_parameters(OUTSIDE, batches=200)
    scalars = {name: value for name, value in parameters.items() if value.shape == parameters["zoom"].shape}
    for name in ("specimen_scale", "specimen_shift_x", "occluder"):
        for column in range(parameters[name].reshape(len(parameters["zoom"]), -1).shape[1]):
            scalars[f"{name}{column}"] = parameters[name].reshape(len(parameters["zoom"]), -1)[:, column]
    scalars.pop("noise_key", None)
    names = [name for name in scalars if np.ptp(scalars[name]) > 0]
    assert {"temperature", "blur", "noise", "occluded", "specimen_scale0", "occluder3", "exposure",
            "stretch"} <= set(names)
    correlations = np.corrcoef(np.stack([scalars[name] for name in names]))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if {names[i], names[j]} <= {"composited", "scale", "shift_x", "shift_y"} or \
                    names[i].rstrip("0123") == names[j].rstrip("0123") or \
                    names[i].startswith("specimen") and names[j].startswith("specimen"):
                continue  # drawn one from another on purpose (a shift's room depends on its scale)
            assert abs(correlations[i, j]) < 0.05, (names[i], names[j], correlations[i, j])
    assert 0.65 < parameters["composited"].mean() < 0.75
    assert 0.27 < parameters["occluded"].mean() < 0.33
    present = parameters["specimen_present"]
    assert present[parameters["composited"] == 0].max() == 0  # copies only on a background
    assert 0.45 < present[:, 0][parameters["composited"] == 1].mean() < 0.55
    assert np.all(present[:, 1] <= present[:, 0])  # a second copy only with a first
    blurred = parameters["blur"][parameters["blur"] > 0]
    assert 0.27 < len(blurred) / len(parameters["blur"]) < 0.33
    assert blurred.max() > 0.95  # whether and how much are separate draws: any amount up to the full blur
    log_gain = np.log(parameters["exposure"])
    assert -0.4 <= log_gain.min() < -0.38 and 0.38 < log_gain.max() <= 0.4 and abs(log_gain.mean()) < 0.02


def test_specimens_add_copies_of_the_fruit_behind_it():
    image, disc = disc_on_white()
    settings = dict(ONLY, background=1.0, zoom_out=0.6, specimens=1.0)
    parameters = augmentation.draw_parameters(settings, augmentation.batch_key(0, 0, 2), 3)
    parameters.update(composited=tf.constant([1.0, 1.0, 0.0]), scale=tf.constant([0.5, 0.5, 1.0]),
                      shift_x=tf.constant([-0.2, -0.2, 0.0]), shift_y=tf.constant([0.0, 0.0, 0.0]),
                      specimen_present=tf.constant([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
                      specimen_scale=tf.fill((3, 2), 0.5), specimen_shift_x=tf.fill((3, 2), 0.2),
                      specimen_shift_y=tf.zeros((3, 2)))
    out = augmentation.apply(tf.constant(np.stack([image] * 3)), parameters, settings).numpy()
    red = (out[..., 0] > 0.6) & (out[..., 1] < 0.2) & (out[..., 2] < 0.3)
    alone = red[1].sum()
    assert abs(red[0].sum() / alone - 2.0) < 0.15  # a second fruit of the same size beside the first
    left, right = red[0][:, :20].sum(), red[0][:, 20:].sum()
    assert abs(left - right) < 0.15 * alone  # one at each shift
    np.testing.assert_array_equal(out[2], image)  # not composited: no copies, nothing changed


def test_occlusion_covers_its_rectangle_with_its_colour_and_nothing_else():
    image, _ = disc_on_white()
    settings = dict(ONLY, occlusion=1.0)
    parameters = augmentation.draw_parameters(settings, augmentation.batch_key(0, 0, 3), 2)
    parameters.update(occluded=tf.constant([1.0, 0.0]), occluder=tf.constant([[0.25, 0.5, 0.5, 0.25]] * 2),
                      occluder_colour=tf.constant([[0.1, 0.9, 0.3]] * 2))
    out = augmentation.apply(tf.constant(np.stack([image, image])), parameters, settings).numpy()
    box = np.zeros((40, 40), bool)
    box[10:30, 20:30] = True  # rows 25% to 75%, columns 50% to 75%
    np.testing.assert_allclose(out[0][box], np.tile([0.1, 0.9, 0.3], (box.sum(), 1)), atol=1e-6)
    np.testing.assert_array_equal(out[0][~box], image[~box])
    np.testing.assert_array_equal(out[1], image)


def test_blur_smooths_by_its_weight_and_keeps_flat_colour():
    rng = np.random.default_rng(0)
    texture = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    flat = np.full((32, 32, 3), 0.4, np.float32)
    settings = dict(ONLY, blur=1.0)
    parameters = augmentation.draw_parameters(settings, augmentation.batch_key(0, 0, 4), 3)
    parameters["blur"] = tf.constant([0.0, 1.0, 1.0])
    out = augmentation.apply(tf.constant(np.stack([texture, texture, flat])), parameters, settings).numpy()
    np.testing.assert_array_equal(out[0], texture)
    assert out[1].std() < 0.4 * texture.std()  # a 1.5-pixel blur takes most of the pixel-to-pixel variation
    np.testing.assert_allclose(out[1].mean(), texture.mean(), atol=0.01)  # it moves no light
    np.testing.assert_allclose(out[2], flat, atol=1e-6)


def test_temperature_and_noise():
    grey = np.full((2, 64, 64, 3), 0.5, np.float32)
    settings = dict(ONLY, temperature=0.2, noise=0.1)
    parameters = augmentation.draw_parameters(settings, augmentation.batch_key(0, 0, 5), 2)
    parameters.update(temperature=tf.constant([0.2, -0.1]), noise=tf.constant([0.0, 0.05]))
    out = augmentation.apply(tf.constant(grey), parameters, settings).numpy()
    np.testing.assert_allclose(out[0].reshape(-1, 3), np.tile([0.6, 0.5, 0.4], (64 * 64, 1)), atol=1e-6)  # warm
    tinted = out[1] - np.array([0.45, 0.5, 0.55])  # cold, then noise of standard deviation 0.05
    assert abs(tinted.mean()) < 0.005 and abs(tinted.std() - 0.05) < 0.005
    again = augmentation.apply(tf.constant(grey), parameters, settings).numpy()
    np.testing.assert_array_equal(out, again)  # the noise is keyed like every other draw


def test_exposure_changes_the_fruit_and_leaves_the_white_round_it():
    """A cut-out of a photo in dim light is a darker fruit on white; exposure makes such images from studio ones."""
    image, disc = disc_on_white()
    settings = dict(ONLY, exposure=0.5)
    parameters = augmentation.draw_parameters(settings, augmentation.batch_key(0, 0, 6), 3)
    parameters["exposure"] = tf.constant([0.5, 1.4, 1.0])
    out = augmentation.apply(tf.constant(np.stack([image] * 3)), parameters, settings).numpy()
    np.testing.assert_allclose(out[0][disc], np.tile([0.35, 0.05, 0.1], (disc.sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(out[1][disc], np.tile([0.98, 0.14, 0.28], (disc.sum(), 1)), atol=1e-6)
    np.testing.assert_array_equal(out[:2][:, ~disc], 1.0)  # the background stays white
    np.testing.assert_array_equal(out[2], image)


def test_stretch_draws_the_fruit_wider_or_taller_by_its_factor():
    image, disc = disc_on_white(size=60, radius=14)
    settings = dict(ONLY, stretch=0.3)
    parameters = augmentation.draw_parameters(settings, augmentation.batch_key(0, 0, 7), 3)
    parameters["stretch"] = tf.constant([1.25, 0.8, 1.0])
    out = augmentation.apply(tf.constant(np.stack([image] * 3)), parameters, settings).numpy()

    def extent(picture, axis):  # the fruit's width (axis 0) or height (axis 1) in pixels, edges counted by weight
        return (1.0 - picture[..., 1]).max(axis=axis).sum() / 0.9

    width, height = extent(image, 0), extent(image, 1)
    assert abs(extent(out[0], 0) / width - 1.25) < 0.05 and abs(extent(out[0], 1) / height - 0.8) < 0.05
    assert abs(extent(out[1], 0) / width - 0.8) < 0.05 and abs(extent(out[1], 1) / height - 1.25) < 0.05
    np.testing.assert_allclose(out[2], image, atol=1e-6)
    log_ratio = np.log(pipeline_parameters(settings, batches=40)["stretch"])
    assert -0.3 <= log_ratio.min() < -0.28 and 0.28 < log_ratio.max() <= 0.3


def test_new_effects_off_leave_the_stream_as_it_was():
    """Keys set to 0 draw nothing and change nothing: older runs' augmented images are unchanged."""
    images = tf.constant(asymmetric_images())
    key = augmentation.batch_key(3, 1, 7)
    before = augmentation.make_augmenter(EVERYTHING)(images, key).numpy()
    off = dict(EVERYTHING, specimens=0.0, temperature=0.0, occlusion=0.0, blur=0.0, noise=0.0, exposure=0.0,
               stretch=0.0)
    np.testing.assert_array_equal(augmentation.make_augmenter(off)(images, key).numpy(), before)
    assert set(augmentation.draw_parameters(off, key, 4)) == set(augmentation.draw_parameters(EVERYTHING, key, 4))


def test_studio_settings_switch_off_only_what_leaves_the_studio():
    """The familiarity thresholds are calibrated through these: the run's jitter, no backgrounds or camera."""
    studio = augmentation.studio_settings(OUTSIDE)
    assert all(studio[key] == 0.0 for key in augmentation.OUTSIDE_THE_STUDIO)
    assert {key: studio[key] for key in ONLY} == {key: OUTSIDE[key] for key in ONLY}
    assert augmentation.studio_settings(None) is None
    images = tf.constant(asymmetric_images())
    key = augmentation.batch_key(0, 0, 0)
    np.testing.assert_array_equal(augmentation.make_augmenter(studio)(images, key).numpy(),
                                  augmentation.make_augmenter(dict(ONLY, **{k: OUTSIDE[k] for k in ONLY}))(
                                      images, key).numpy())
