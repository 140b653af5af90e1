from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fruitkeras import data as datalib
from fruitkeras.errors import FruitkerasError


def test_resolve_prefers_option_then_environment_then_local(tmp_path, monkeypatch):
    option, env, local = (tmp_path / name for name in ("option", "env", "work"))
    for folder in (option, env, local / "data"):
        folder.mkdir(parents=True)
    monkeypatch.chdir(local)
    monkeypatch.setenv(datalib.DATA_ENV, str(env))
    assert datalib.resolve_data_dir(str(option)) == option
    assert datalib.resolve_data_dir(None) == env
    monkeypatch.delenv(datalib.DATA_ENV)
    assert datalib.resolve_data_dir(None).resolve() == (local / "data").resolve()


def test_resolve_error_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(datalib.DATA_ENV, raising=False)
    with pytest.raises(FruitkerasError, match=r"tried --data \(not given\), FRUITKERAS_DATA \(not given\), ./data = data \(no such folder\)"):
        datalib.resolve_data_dir(None)
    monkeypatch.setenv(datalib.DATA_ENV, str(tmp_path / "gone"))
    with pytest.raises(FruitkerasError, match=r"FRUITKERAS_DATA = .*gone \(no such folder\)$"):
        datalib.resolve_data_dir(None)
    with pytest.raises(FruitkerasError, match=r"--data = .*missing \(no such folder\)$"):
        datalib.resolve_data_dir(str(tmp_path / "missing"))


def save(path, array, mode=None, **kwargs):
    Image.fromarray(array, mode).save(path, **kwargs) if mode else Image.fromarray(array).save(path, **kwargs)
    return path


def test_grey_image_becomes_rgb(tmp_path):
    grey = save(tmp_path / "g.png", np.full((5, 7), 80, np.uint8))
    rgb = datalib.read_rgb(grey)
    assert rgb.shape == (5, 7, 3) and (rgb == 80).all()


def test_transparent_pixels_become_the_white_background(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    rgb = datalib.read_rgb(save(tmp_path / "a.png", rgba))
    assert (rgb[:2] == [200, 0, 0]).all()
    assert (rgb[2:] == 255).all()


def tagged_jpeg(path, array, orientation):
    """``array`` as a JPEG whose EXIF says how to turn it for display, as a phone writes it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(path, array, quality=95, exif=exif)


def test_a_phone_photos_exif_orientation_is_applied(tmp_path):
    stored = np.random.default_rng(1).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    plain = datalib.read_rgb(save(tmp_path / "plain.jpg", stored, quality=95))  # the same encoder, the same pixels
    # 6: the camera was turned a quarter clockwise; a viewer turns the stored picture 90 degrees clockwise.
    upright = datalib.read_rgb(tagged_jpeg(tmp_path / "six.jpg", stored, 6))
    assert upright.shape == (20, 12, 3)
    np.testing.assert_array_equal(upright, np.rot90(plain, k=-1))
    np.testing.assert_array_equal(datalib.read_rgb(tagged_jpeg(tmp_path / "three.jpg", stored, 3)), np.rot90(plain, 2))
    np.testing.assert_array_equal(datalib.read_rgb(tagged_jpeg(tmp_path / "one.jpg", stored, 1)), plain)


def test_the_fast_decoder_leaves_tagged_photos_to_pillow_which_turns_them(tmp_path):
    """A square tagged JPEG at the model's size would take TensorFlow's decoder, which ignores the tag."""
    folder = tmp_path / "Training" / "apple"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    save(folder / "a_plain.jpg", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), quality=95)
    stored = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    tagged = tagged_jpeg(folder / "b_tagged.jpg", stored, 6)
    split = datalib.read_split(tmp_path / "Training", (16, 16))
    upright = datalib.read_rgb(tagged)
    np.testing.assert_array_equal(split.images[1], upright)
    assert not np.array_equal(upright, datalib.read_rgb(save(tmp_path / "stored.jpg", stored, quality=95)))


def test_16_bit_32_bit_and_float_grey_images_are_scaled_to_8_bits(tmp_path):
    levels = np.linspace(0, 1, 64).reshape(8, 8)
    expected = np.round(levels * 255).astype(np.uint8)
    sixteen = (levels * 65535).round().astype(np.uint16)
    png = save(tmp_path / "sixteen.png", sixteen)
    with Image.open(png) as image:
        assert image.mode == "I;16"  # Pillow's own RGB conversion clips this at 255: all white
    wide = {"sixteen.png": png,
            "int32.tif": save(tmp_path / "int32.tif", sixteen.astype(np.int32)),
            "float.tif": save(tmp_path / "float.tif", levels.astype(np.float32))}
    for name, path in wide.items():
        rgb = datalib.read_rgb(path)
        assert rgb.shape == (8, 8, 3), name
        assert np.abs(rgb.astype(int) - expected[..., None]).max() <= 1, name


def test_other_modes_reach_the_model_as_their_colours(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (6, 6, 3), dtype=np.uint8)
    cmyk = tmp_path / "cmyk.tif"
    Image.fromarray(rgb).convert("CMYK").save(cmyk)
    np.testing.assert_array_equal(datalib.read_rgb(cmyk), rgb)
    grey_alpha = np.stack([np.full((4, 4), 90, np.uint8), np.full((4, 4), 255, np.uint8)], axis=-1)
    grey_alpha[2:, :, 1] = 0  # bottom half transparent
    shown = datalib.read_rgb(save(tmp_path / "la.png", grey_alpha, "LA"))
    assert (shown[:2] == 90).all() and (shown[2:] == 255).all()
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([200, 10, 10] + [0, 0, 0] * 255)
    palette.paste(1, (0, 2, 4, 4))  # bottom half: entry 1, the transparent one
    palette.save(tmp_path / "p.png", transparency=1)
    shown = datalib.read_rgb(tmp_path / "p.png")
    assert (shown[:2] == [200, 10, 10]).all() and (shown[2:] == 255).all()


def test_float_samples_of_no_known_scale_are_refused_in_one_line(tmp_path):
    path = save(tmp_path / "odd.tif", np.linspace(-40, 900, 16, dtype=np.float32).reshape(4, 4))
    with pytest.raises(datalib.ImageError, match="no known 8-bit scale") as error:
        datalib.read_rgb(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "content, reason",
    [(b"not an image at all", "not an image file"), (None, "unreadable image")],
)
def test_bad_files_raise_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    if content is None:  # a JPEG cut in half
        save(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(datalib.ImageError, match=reason) as error:
        datalib.read_rgb(path)
    assert "\n" not in str(error.value)


def test_missing_image(tmp_path):
    with pytest.raises(datalib.ImageError, match="no such file"):
        datalib.read_rgb(tmp_path / "gone.jpg")


def test_odd_sizes_are_padded_white_then_resized():
    tall = np.zeros((40, 20, 3), np.uint8)
    fitted = datalib.fit_to_size(tall, (10, 10))
    assert fitted.shape == (10, 10, 3)
    assert (fitted[:, 0] > 240).all() and (fitted[:, -1] > 240).all()  # white side bands
    assert (fitted[:, 4:6] < 15).all()  # the black content in the middle
    same = np.ones((10, 10, 3), np.uint8)
    assert datalib.fit_to_size(same, (10, 10)) is same


def test_load_image_scales_to_unit_range(tmp_path):
    path = save(tmp_path / "w.png", np.full((8, 8, 3), 255, np.uint8))
    image = datalib.load_image(path, (4, 4))
    assert image.dtype == np.float32 and image.shape == (4, 4, 3)
    np.testing.assert_allclose(image, 1.0)


def test_unusable_files_are_found_once_decoded_and_reported(image_folders, capsys):
    kiwi = image_folders / "Training" / "kiwi"
    (kiwi / "notes.txt").write_text("hello")
    (kiwi / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    good = (kiwi / "0_100.jpg").read_bytes()
    (kiwi / "truncated.jpg").write_bytes(good[: len(good) // 2])
    listed = datalib.scan_split(image_folders / "Training")
    assert [p.name for p, _ in listed.skipped] == ["notes.txt"]  # listing reads no image
    assert len(listed) == 38
    split = datalib.decode_split(listed, (16, 16))
    assert split.class_names == ["cherry", "kiwi", "plum"]
    assert len(split) == 36 and np.bincount(split.labels).tolist() == [12, 12, 12]
    assert split.images.shape == (36, 16, 16, 3)
    assert {p.name for p, _ in split.skipped} == {"notes.txt", "broken.jpg", "truncated.jpg"}
    datalib.report_skipped(split)
    assert "skipped 3 unusable file(s)" in capsys.readouterr().err


def test_decoded_pixels_equal_load_rgb_for_every_kind_of_file(tmp_path):
    """The fast decoder and load_rgb (used by explain and predict) must agree exactly."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "Training" / "mixed"
    folder.mkdir(parents=True)
    photo = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    save(folder / "a_jpeg.jpg", photo, quality=90)  # the dataset's case: the fast path
    save(folder / "b_big.jpg", rng.integers(0, 255, (40, 24, 3), dtype=np.uint8))  # another size
    save(folder / "c_grey.jpg", rng.integers(0, 255, (16, 16), dtype=np.uint8))
    save(folder / "d_png.png", photo)
    rgba = np.concatenate([photo, rng.integers(0, 255, (16, 16, 1), dtype=np.uint8)], axis=-1)
    save(folder / "e_rgba.png", rgba)
    split = datalib.read_split(tmp_path / "Training", (16, 16))
    assert len(split) == 5 and not split.skipped
    for path, image in zip(split.paths, split.images):
        np.testing.assert_array_equal(image, datalib.load_rgb(path, (16, 16)), err_msg=path)


def test_limit_per_class_is_reproducible(image_folders):
    first = datalib.scan_split(image_folders / "Training", limit_per_class=5, seed=3)
    again = datalib.scan_split(image_folders / "Training", limit_per_class=5, seed=3)
    assert len(first) == 15 and first.paths == again.paths


def test_class_without_readable_images_is_an_error(image_folders):
    empty = image_folders / "Training" / "lime"
    empty.mkdir()
    (empty / "x.jpg").write_bytes(b"nope")
    listed = datalib.scan_split(image_folders / "Training")  # an image name is enough to be listed
    with pytest.raises(FruitkerasError, match="class 'lime' has no readable images"):
        datalib.decode_split(listed, (8, 8))


def test_class_without_image_files_is_an_error_when_listed(image_folders):
    (image_folders / "Test" / "lime").mkdir()
    with pytest.raises(FruitkerasError, match="class 'lime' has no image files"):
        datalib.scan_split(image_folders / "Test")


def test_missing_split_and_no_classes(tmp_path):
    with pytest.raises(FruitkerasError, match="Training: missing"):
        datalib.class_folders(tmp_path / "Training")
    (tmp_path / "Test").mkdir()
    with pytest.raises(FruitkerasError, match="no class folders"):
        datalib.class_folders(tmp_path / "Test")


def test_class_mismatch_message():
    with pytest.raises(FruitkerasError, match=r"Test/ has 1 class\(es\) unknown to Training/: lime; Test/ lacks 1 of its 2 class\(es\): kiwi"):
        datalib.check_same_classes(["cherry", "kiwi"], ["cherry", "lime"], "Training/", "Test/")
    datalib.check_same_classes(["a", "b"], ["b", "a"], "x", "y")


def test_validation_split_is_stratified_disjoint_and_seeded(image_folders):
    split = datalib.read_split(image_folders / "Training", (8, 8))
    train, val = datalib.split_validation(split, 0.25, seed=1)
    assert np.bincount(split.labels[val]).tolist() == [3, 3, 3]
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(split)
    np.testing.assert_array_equal(datalib.split_validation(split, 0.25, seed=1)[1], val)
    assert set(datalib.split_validation(split, 0.25, seed=2)[1]) != set(val)


def test_validation_blocks_take_consecutive_frames_together(tmp_path):
    folder = tmp_path / "Training" / "apple"
    folder.mkdir(parents=True)
    for number in range(40):  # frames 0..39, named as Fruits-360 names them
        save(folder / f"r_{number}_100.jpg", np.full((4, 4, 3), 200, np.uint8))
    split = datalib.read_split(tmp_path / "Training", (4, 4))
    _, val = datalib.split_validation(split, 0.25, seed=0, block=5)
    frames = sorted(int(Path(split.paths[i]).name.split("_")[1]) for i in val)
    assert len(frames) == 10
    assert len({frame // 5 for frame in frames}) == 2  # two whole runs of 5 consecutive frames


def test_decoded_images_are_shared_with_tensorflow_not_copied(image_folders):
    split = datalib.read_split(image_folders / "Test", (8, 8))
    tensor = split.tensor()
    assert tensor is split.tensor()  # made once
    np.testing.assert_array_equal(tensor.numpy(), split.images)
    split.images[0, 0, 0, 0] = 7  # the same memory
    assert int(tensor[0, 0, 0, 0]) == 7


def test_pipeline_batches_scaled_images(image_folders):
    split = datalib.read_split(image_folders / "Test", (16, 16))
    rows = datalib.make_dataset(split, batch_size=5, rows=[3, 0])
    picked = np.concatenate([b[1].numpy() for b in rows])
    assert picked.tolist() == split.labels[[3, 0]].tolist()
    batches = list(datalib.make_dataset(split, batch_size=5))
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.shape == (12, 16, 16, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.tolist() == split.labels.tolist()
    # The pipeline and load_image give the same pixels.
    np.testing.assert_allclose(images[0], datalib.load_image(split.paths[0], (16, 16)), atol=1e-6)


def test_shuffled_pipeline_drops_the_partial_batch_and_reshuffles(image_folders):
    split = datalib.read_split(image_folders / "Training", (8, 8))  # 36 images
    dataset = datalib.make_dataset(split, batch_size=10, shuffle=True, seed=0, repeat=True)
    batches = [batch[1].numpy().tolist() for batch in dataset.take(6)]
    first, second = batches[:3], batches[3:]
    assert [len(b) for b in batches] == [10] * 6  # no batch of 6 to skew batch-norm statistics
    assert first != second


def test_shuffled_epochs_are_a_function_of_seed_and_epoch(image_folders):
    """A pipeline started at epoch 2 (a resumed run) yields what an uninterrupted one yields from epoch 2."""
    split = datalib.read_split(image_folders / "Training", (8, 8))

    def labels_of(dataset, count):
        return [batch[1].numpy().tolist() for batch in dataset.take(count)]

    from_start = labels_of(datalib.make_dataset(split, 10, shuffle=True, seed=4, repeat=True), 9)
    from_epoch_2 = labels_of(datalib.make_dataset(split, 10, shuffle=True, seed=4, repeat=True, first_epoch=2), 3)
    assert from_epoch_2 == from_start[6:9]
    one_epoch = labels_of(datalib.make_dataset(split, 10, shuffle=True, seed=4, first_epoch=1), 10)
    assert one_epoch == from_start[3:6]  # not repeating: that one epoch only
    other_seed = labels_of(datalib.make_dataset(split, 10, shuffle=True, seed=5, repeat=True), 9)
    assert other_seed != from_start


def test_mean_colour_of_white_images_is_white(tmp_path):
    folder = tmp_path / "Training" / "snow"
    folder.mkdir(parents=True)
    for i in range(3):
        save(folder / f"{i}.png", np.full((6, 6, 3), 255, np.uint8))
    split = datalib.read_split(tmp_path / "Training", (6, 6))
    np.testing.assert_allclose(datalib.mean_colour(split), [1.0, 1.0, 1.0])
