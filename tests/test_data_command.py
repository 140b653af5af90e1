"""fruitkeras data download and data check, against a real HTTP server on a loopback port."""

import http.server
import io
import json
import shutil
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_COLOURS, REPO, draw_fruit, make_image_folders
from fruitkeras.cli import main


def fruits_zip(prefix, classes, per_split=(6, 3), seed=0):
    """A Fruits-360-style zip: PREFIX/Training/<class>/*.jpg and PREFIX/Test/<class>/*.jpg, plus a README."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{prefix}README.md", "Fruits-360 (test copy)")
        for split, count in zip(("Training", "Test"), per_split):
            for name, colour in classes.items():
                for index in range(count):
                    image = io.BytesIO()
                    Image.fromarray(draw_fruit(colour, rng)).save(image, format="JPEG", quality=90)
                    archive.writestr(f"{prefix}{split}/{name}/r_{index}_100.jpg", image.getvalue())
    return buffer.getvalue()


class Archives(http.server.BaseHTTPRequestHandler):
    files = {}  # path -> bytes
    cut_next = set()  # paths whose next request is cut half-way

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.cut_next:
            self.cut_next.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Archives)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def download(runner, server, path, out, cache, *extra):
    return runner.invoke(main, ["data", "download", "--url", f"{server}{path}", "--out", str(out),
                                "--cache-dir", str(cache), *extra])


@pytest.mark.parametrize("prefix", ["fruits-360-100x100-main/", "archive/fruits-360_100x100/fruits-360/"])
def test_download_extracts_training_and_test_wherever_they_sit(server, runner, tmp_path, cache, prefix):
    path = f"/{len(prefix)}.zip"
    Archives.files[path] = fruits_zip(prefix, CLASS_COLOURS)
    result = download(runner, server, path, tmp_path / "data", cache, "--classes", "all")
    assert result.exit_code == 0, result.output
    assert "Training: 18 images in 3 classes" in result.output and "Test: 9 images in 3 classes" in result.output
    for split, count in (("Training", 6), ("Test", 3)):
        assert sorted(p.name for p in (tmp_path / "data" / split).iterdir()) == sorted(CLASS_COLOURS)
        assert all(len(list((tmp_path / "data" / split / name).iterdir())) == count for name in CLASS_COLOURS)
    assert not (tmp_path / "data" / "README.md").exists()  # only Training/ and Test/
    source = json.loads((tmp_path / "data" / "SOURCE.json").read_text())
    assert source["url"].endswith(path) and source["images"] == {"Training": 18, "Test": 9}
    # The downloaded folder trains like any other: fruitkeras reads it as it is.
    from fruitkeras import data as datalib

    assert datalib.scan_split(tmp_path / "data" / "Training").class_names == sorted(CLASS_COLOURS)


def test_class_selection_from_a_file_and_the_later_releases_names(server, runner, tmp_path, cache):
    """A release that spells 'kiwi' as 'kiwi 1' (as Fruits-360 did from 2023 on) still gives the folder 'kiwi'."""
    Archives.files["/renamed.zip"] = fruits_zip("r/", {"cherry": (200, 20, 30), "kiwi 1": (90, 160, 40),
                                                      "plum": (80, 30, 120)})
    chosen = tmp_path / "classes.txt"
    chosen.write_text("# two of them\nkiwi\ncherry\n")
    result = download(runner, server, "/renamed.zip", tmp_path / "two", cache, "--classes", str(chosen))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "two" / "Training").iterdir()) == ["cherry", "kiwi"]
    assert json.loads((tmp_path / "two" / "SOURCE.json").read_text())["renamed_from_archive"] == {"kiwi 1": "kiwi"}
    chosen.write_text("kiwi\nmango\n")
    missing = download(runner, server, "/renamed.zip", tmp_path / "three", cache, "--classes", str(chosen))
    assert missing.exit_code == 1 and missing.output.count("\n") == 1
    assert "1 of 2 classes are not in this archive: mango" in missing.output
    assert not (tmp_path / "three").exists()


def test_benchmark_list_is_the_77_classes():
    from fruitkeras.data_download import benchmark_classes

    names = benchmark_classes()
    assert len(names) == len(set(names)) == 77
    assert {"Apple Braeburn", "Cherry 1", "Tomato 4", "Potato Sweet"} <= set(names)


def test_a_cut_download_is_an_error_and_the_same_command_then_completes(server, runner, tmp_path, cache):
    Archives.files["/cut.zip"] = fruits_zip("f/", CLASS_COLOURS)
    Archives.cut_next.add("/cut.zip")
    first = download(runner, server, "/cut.zip", tmp_path / "data", cache, "--classes", "all")
    assert first.exit_code == 1
    assert first.stderr.startswith("error: download from") and first.stderr.count("\n") == 1
    assert not (tmp_path / "data").exists()
    assert not any(cache.rglob("*.zip")) if cache.exists() else True  # nothing half-written kept
    again = download(runner, server, "/cut.zip", tmp_path / "data", cache, "--classes", "all")
    assert again.exit_code == 0, again.output
    assert len(list((tmp_path / "data" / "Test" / "kiwi").iterdir())) == 3


def test_a_corrupt_zip_is_one_line_and_leaves_no_complete_looking_folder(server, runner, tmp_path, cache):
    good = fruits_zip("f/", CLASS_COLOURS)
    Archives.files["/corrupt.zip"] = good[:200] + bytes(len(good) - 400) + good[-200:]
    result = download(runner, server, "/corrupt.zip", tmp_path / "data", cache, "--classes", "all")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "corrupt or cut short" in result.stderr
    assert not (tmp_path / "data").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data.partial")]
    assert not any(cache.rglob("*corrupt*"))  # removed from the cache, so the next run fetches it again


def test_download_refuses_a_folder_that_holds_something(server, runner, tmp_path, cache):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    result = download(runner, server, "/nothing.zip", tmp_path / "data", cache)
    assert result.exit_code == 1 and "exists and is not empty" in result.output
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"


def save_jpeg(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


def test_check_finds_planted_duplicates_and_near_copies(tmp_path, runner):
    root = make_image_folders(tmp_path / "fruits", train_per_class=8, test_per_class=4)
    kiwi_train = sorted((root / "Training" / "kiwi").iterdir())
    # Exact copies: one Training file again in Test, one twice in Training.
    (root / "Test" / "kiwi" / "copy.jpg").write_bytes(kiwi_train[0].read_bytes())
    (root / "Training" / "kiwi" / "again.jpg").write_bytes(kiwi_train[1].read_bytes())
    # A near-copy: a Training plum shifted by one grey level, saved as a Test image.
    plum = np.asarray(Image.open(sorted((root / "Training" / "plum").iterdir())[0]), np.int16)
    save_jpeg(root / "Test" / "plum" / "near.jpg", np.clip(plum + 1, 0, 255).astype(np.uint8))
    (root / "Test" / "cherry" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")

    result = runner.invoke(main, ["data", "check", str(root), "--json"])
    assert result.exit_code == 1, result.output  # unreadable files and duplicates are problems
    findings = json.loads(result.stdout)
    assert findings["splits"]["Training"]["classes"] == {"cherry": 8, "kiwi": 9, "plum": 8}
    assert findings["splits"]["Test"]["classes"] == {"cherry": 4, "kiwi": 5, "plum": 5}
    assert [entry["file"].endswith("broken.jpg") for entry in findings["unreadable"]] == [True]
    assert findings["exact_duplicates"]["across_splits"] == 1 and findings["exact_duplicates"]["within_splits"] == 1
    near = findings["near_duplicates"]
    assert near["test_images_compared"] == 14
    # The planted copy and the near-copy are within 5 grey levels; the random discs are not.
    assert near["per_class"]["plum"] == pytest.approx(1 / 5) and near["per_class"]["kiwi"] == pytest.approx(1 / 5)
    assert near["per_class"]["cherry"] == 0
    assert findings["verdict"].startswith("problems: 1 unreadable file(s); 1 image(s) in both Training and Test")

    text = runner.invoke(main, ["data", "check", str(root)])
    assert text.output.strip().splitlines()[-1] == findings["verdict"]


def test_check_of_a_clean_folder_says_ok(tmp_path, runner):
    root = make_image_folders(tmp_path / "fruits", train_per_class=5, test_per_class=2)
    result = runner.invoke(main, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("ok (3 classes, 15 Training, 6 Test images)")
    # Every check is named, with what it found, "none" included.
    for line in ("classes to train on: 3 in Training", "Training and Test classes: the same",
                 "unreadable files: none", "exact duplicates within a split: none",
                 "exact duplicates across splits: none", "near-copies across splits: "):
        assert f"    {line}" in result.output, line
    missing = runner.invoke(main, ["data", "check", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and missing.output == f"error: {tmp_path / 'nowhere'}: no such folder\n"


def test_check_reports_a_class_that_training_lacks(tmp_path, runner):
    root = make_image_folders(tmp_path / "fruits", train_per_class=5, test_per_class=2)
    shutil.copytree(root / "Test" / "kiwi", root / "Test" / "mango")
    result = runner.invoke(main, ["data", "check", str(root), "--json"])
    assert result.exit_code == 1, result.output
    findings = json.loads(result.stdout)
    assert findings["class_mismatch"] == {"only_in_test": ["mango"], "only_in_training": []}
    assert "Training and Test have different classes (1 only in Test, 0 only in Training)" in findings["verdict"]
    text = runner.invoke(main, ["data", "check", str(root)]).output
    assert "    Training and Test classes: 1 class(es) only in Test: mango  <- problem" in text


def test_one_class_is_refused_by_check_and_by_train(tmp_path, runner):
    root = make_image_folders(tmp_path / "fruits", train_per_class=5, test_per_class=2, classes={"kiwi": (90, 160, 60)})
    result = runner.invoke(main, ["data", "check", str(root)])
    assert result.exit_code == 1, result.output
    assert "1 class in Training (training needs at least 2)" in result.output.splitlines()[-1]
    trained = runner.invoke(main, ["train", str(REPO / "architectures" / "tiny.json"), "--data", str(root),
                                   "--run-dir", str(tmp_path / "run")])
    assert trained.exit_code == 1
    assert trained.output == (f"error: {root / 'Training'}: 1 class (kiwi); training needs at least 2 class folders\n")
    assert not (tmp_path / "run").exists()
