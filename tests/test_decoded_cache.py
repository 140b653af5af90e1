"""The decoded cache: built on first use, never served stale, a damaged entry rebuilt, the same pixels as decoding."""

import os

import numpy as np
import pytest
from PIL import Image

from fruitkeras import data as datalib
from fruitkeras.decoded_cache import IMAGES_FILE, META_FILE, decode_cached


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FRUITKERAS_CACHE", str(folder))
    return folder


def entries(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def listed_training(image_folders):
    return datalib.scan_split(image_folders / "Training")


def test_the_first_run_fills_the_cache_and_the_next_reads_the_same_pixels(image_folders, cache, capfd):
    fresh = datalib.decode_split(listed_training(image_folders), (16, 16))
    first = decode_cached(listed_training(image_folders), (16, 16))
    assert "into the cache" in capfd.readouterr().out
    assert len(entries(cache)) == 1
    second = decode_cached(listed_training(image_folders), (16, 16))
    assert "into the cache" not in capfd.readouterr().out  # read, not decoded again
    decode_cached(listed_training(image_folders), (8, 8), quiet=True)
    assert capfd.readouterr().out == ""
    for split in (first, second):
        np.testing.assert_array_equal(split.images, fresh.images)
        np.testing.assert_array_equal(split.labels, fresh.labels)
        assert split.paths == fresh.paths and split.class_names == fresh.class_names
        assert split.images.ctypes.data % 64 == 0  # TensorFlow can take the memory in place (Split.tensor)


def test_a_changed_file_is_seen_by_the_next_run(image_folders, cache):
    before = decode_cached(listed_training(image_folders), (16, 16))
    changed = image_folders / "Training" / "cherry" / "3_100.jpg"
    Image.new("RGB", (40, 40), (0, 0, 255)).save(changed, quality=95)
    after = decode_cached(listed_training(image_folders), (16, 16))
    index = after.paths.index(str(changed))
    assert not np.array_equal(after.images[index], before.images[index])
    np.testing.assert_array_equal(after.images[index], datalib.load_rgb(changed, (16, 16)))
    assert len(entries(cache)) == 2  # a new key; the stale entry is never read again


def test_added_and_removed_files_another_folder_and_another_size_are_other_entries(image_folders, tmp_path, cache):
    decode_cached(listed_training(image_folders), (16, 16))
    decode_cached(listed_training(image_folders), (8, 8))
    assert len(entries(cache)) == 2
    extra = image_folders / "Training" / "kiwi" / "99_100.jpg"
    Image.new("RGB", (40, 40), (0, 200, 0)).save(extra)
    grown = decode_cached(listed_training(image_folders), (16, 16))
    assert len(grown) == 37 and str(extra) in grown.paths and len(entries(cache)) == 3
    extra.unlink()
    assert len(decode_cached(listed_training(image_folders), (16, 16))) == 36
    copy = tmp_path / "copy"
    os.rename(image_folders, copy)  # the same files in another folder
    moved = decode_cached(datalib.scan_split(copy / "Training"), (16, 16))
    assert all(path.startswith(str(copy)) for path in moved.paths)
    assert len(entries(cache)) == 4  # the shrunk set was the first entry again; the moved folder is a new one


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "meta garbled"])
def test_a_damaged_entry_is_rebuilt_never_used(image_folders, cache, capfd, damage):
    fresh = datalib.decode_split(listed_training(image_folders), (16, 16))
    decode_cached(listed_training(image_folders), (16, 16))
    (entry,) = cache.iterdir()
    images = entry / IMAGES_FILE
    if damage == "flipped byte":
        raw = bytearray(images.read_bytes())
        raw[-100] ^= 0xFF
        images.write_bytes(bytes(raw))
    elif damage == "cut short":
        images.write_bytes(images.read_bytes()[:-500])
    else:
        (entry / META_FILE).write_text("{not json")
    capfd.readouterr()
    rebuilt = decode_cached(listed_training(image_folders), (16, 16))
    err = capfd.readouterr().err
    assert "is damaged" in err and "rebuilding it" in err and len(err.strip().splitlines()) == 1
    np.testing.assert_array_equal(rebuilt.images, fresh.images)
    again = decode_cached(listed_training(image_folders), (16, 16))  # the rebuilt entry is whole
    assert "damaged" not in capfd.readouterr().err
    np.testing.assert_array_equal(again.images, fresh.images)


def test_unreadable_files_stay_skipped_when_read_from_the_cache(image_folders, cache):
    (image_folders / "Training" / "plum" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    first = decode_cached(listed_training(image_folders), (16, 16))
    second = decode_cached(listed_training(image_folders), (16, 16))
    for split in (first, second):
        assert len(split) == 36 and [p.name for p, _ in split.skipped] == ["broken.jpg"]
        assert not any(path.endswith("broken.jpg") for path in split.paths)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_the_cache_can_be_switched_off(image_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("FRUITKERAS_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    split = decode_cached(listed_training(image_folders), (16, 16))
    assert len(split) == 36
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_the_default_place_is_the_users_cache_folder(image_folders, tmp_path, monkeypatch):
    monkeypatch.delenv("FRUITKERAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    decode_cached(listed_training(image_folders), (16, 16))
    assert len(list((tmp_path / "xdg" / "fruitkeras" / "decoded").iterdir())) == 1


def test_data_prepare_fills_the_cache_that_the_next_training_reads(image_folders, cache, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from conftest import REPO
    from fruitkeras.cli import main

    from fruitkeras import precision
    from fruitkeras.architecture import for_precision, load_architecture

    live = REPO / "architectures" / "live.json"  # 80x80, and 72x72 where it computes in float32
    # oneDNN capped below bfloat16, as on a CPU without it: live.json's "auto" chooses float32 and its size.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    size = for_precision(load_architecture(live), precision.choose("auto").compute).input_size
    assert size == ((80, 80) if precision.choose("auto").compute == "float16" else (72, 72))  # a GPU: float16
    runner = CliRunner()
    result = runner.invoke(main, ["data", "prepare", str(live), "--data", str(image_folders)])
    assert result.exit_code == 0, result.output
    counts = [len(datalib.scan_split(image_folders / split)) for split in ("Training", "Test")]
    assert (f"ready: Training/ ({counts[0]} photos) and Test/ ({counts[1]} photos) of {image_folders} at "
            f"{size[0]}x{size[1]} in the decoded cache {cache}") in result.output
    assert len(entries(cache)) == 2
    # The training decodes nothing: both splits come from the entries prepared, their pixels decoding's own.
    trained = runner.invoke(main, ["train", str(live), "--data", str(image_folders), "--epochs", "1",
                                   "--set", "training.batch_size=16", "--run-dir", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    assert "into the cache" not in trained.output and len(entries(cache)) == 2
    for split in ("Training", "Test"):
        listed = datalib.scan_split(image_folders / split)
        np.testing.assert_array_equal(decode_cached(listed, size).images, datalib.decode_split(listed, size).images)
    # Another size is another entry; with the cache off there is nothing to prepare: one line, exit 1.
    result = runner.invoke(main, ["data", "prepare", str(live), "--data", str(image_folders),
                                  "--set", "input.height=64", "--set", "input.width=64"])
    assert result.exit_code == 0 and "at 64x64" in result.output and len(entries(cache)) == 4
    monkeypatch.setenv("FRUITKERAS_CACHE", "off")
    result = runner.invoke(main, ["data", "prepare", str(live), "--data", str(image_folders)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["error: the decoded cache is off (FRUITKERAS_CACHE=off): there is "
                                                  "nothing to prepare"]
