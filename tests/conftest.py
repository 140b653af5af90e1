"""Shared fixtures: tiny synthetic image folders and one tiny trained run."""

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The decoded cache (fruitkeras.decoded_cache) of the suite's tiny folders: never the user's own.
os.environ["FRUITKERAS_CACHE"] = tempfile.mkdtemp(prefix="fruitkeras-test-cache-")
atexit.register(shutil.rmtree, os.environ["FRUITKERAS_CACHE"], True)  # the 77-class Test set's entry is 0.4 GB

REPO = Path(__file__).resolve().parent.parent
TINY_ARCHITECTURE = REPO / "architectures" / "tiny.json"

# Every part of the 77-class recipe (cosine schedule with warm-up, decoupled weight decay, label
# smoothing, precise BN, dropout, every augmentation) on a tiny network: tiny.json uses none of them.
RECIPE_TINY = {
    "name": "recipe_tiny",
    "input": {"height": 32, "width": 32},
    "layers": [
        {"type": "conv", "filters": 8, "kernel_size": 3, "strides": 2, "use_bias": False},
        {"type": "batchnorm", "momentum": 0.9},
        {"type": "activation", "activation": "relu"},
        {"type": "maxpool", "pool_size": 2},
        {"type": "global_avg_pool"},
        {"type": "dense", "units": 16, "use_bias": False},
        {"type": "batchnorm", "momentum": 0.9},
        {"type": "activation", "activation": "relu"},
        {"type": "dropout", "rate": 0.3},
    ],
    "training": {
        "optimizer": "adamw", "learning_rate": 0.01, "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 1,
        "batch_size": 8, "epochs": 4, "label_smoothing": 0.1, "precise_bn_batches": 2, "validation_split": 0.2,
        "augmentation": {"flip": True, "rotation": 0.1, "zoom": 0.2, "brightness": 0.1, "hue": 0.05,
                         "saturation": 0.2},
    },
}

# Each class is a coloured shape on white, the way Fruits-360 photos look.
CLASS_COLOURS = {"cherry": (200, 20, 30), "kiwi": (90, 160, 40), "plum": (80, 30, 120)}


def draw_fruit(colour, rng, size=40):
    """A filled disc of ``colour`` (with a little noise) on a white square."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.4, size * 0.6, size=2)
    radius = rng.uniform(size * 0.25, size * 0.35)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    pixels = np.full((size, size, 3), 255, dtype=np.int16)
    pixels[inside] = np.asarray(colour) + rng.integers(-15, 16, size=(int(inside.sum()), 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_image_folders(root, train_per_class=12, test_per_class=4, classes=CLASS_COLOURS, seed=0):
    """Write ROOT/Training/<class>/*.jpg and ROOT/Test/<class>/*.jpg; returns ROOT."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (("Training", train_per_class), ("Test", test_per_class)):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                Image.fromarray(draw_fruit(colour, rng)).save(folder / f"{index}_100.jpg", quality=95)
    return root


@pytest.fixture
def image_folders(tmp_path):
    return make_image_folders(tmp_path / "fruits")


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny model trained through the CLI, shared read-only by the tests that need a model."""
    from fruitkeras.cli import main

    base = tmp_path_factory.mktemp("trained")
    data = make_image_folders(base / "fruits", train_per_class=16, test_per_class=5)
    run_dir = base / "runs" / "tiny"
    result = CliRunner().invoke(
        main, ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir", str(run_dir), "--epochs", "3", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return {"data": data, "run_dir": run_dir, "model": run_dir / "model.keras"}


@pytest.fixture
def architecture_file(tmp_path):
    """Write an architecture dict to a file; returns the path."""

    def write(source, name="arch.json"):
        path = tmp_path / name
        path.write_text(json.dumps(source) if not isinstance(source, str) else source)
        return path

    return write


def picture(path):
    """(width, height, distinct colours) of a PNG: a drawn figure, not a blank or broken file."""
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        return image.width, image.height, len(colours)


def copy_run(run_dir, destination):
    shutil.copytree(run_dir, destination)
    return destination


# The files that take longest, longest first (seconds of test time on the idle 2-core machine, 2026-12-04):
# pytest-xdist's --dist loadfile hands out whole files in collection order (setup.cfg's --no-loadscope-reorder:
# otherwise it orders them by their number of tests), so starting with these lets the two workers finish
# together instead of one waiting for the page's tests at the end.
LONGEST_FIRST = ("test_webapp.py",  # 78
                 "test_faults.py",  # 50 (2026-12-08: seven train processes, each importing TensorFlow)
                 "test_new_user.py",  # 50
                 "test_distribute.py",  # 38
                 "test_explain.py",  # 34
                 "test_training.py",  # 30
                 "test_reproducibility.py",  # 24
                 "test_familiarity.py",  # 24
                 "test_model_files.py",  # 22
                 "test_studies.py",  # 16
                 "test_live_recipe.py",  # 14
                 "test_real_data.py",  # 14
                 "test_faithfulness.py",  # 12
                 "test_registry.py")  # 10


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


# --- The machine failing (test_faults.py, test_full_disk.py, benchmarks/kill_and_resume.py) ---------------------

EPOCHS, SEED = 3, 5
VARYING = {"timestamp", "epoch_seconds"}  # the clock's columns; every other cell must be equal, as text


def history_without_clock(run_dir):
    from fruitkeras.checkpoint import read_history

    header, rows = read_history(run_dir / "history.csv")
    kept = [index for index, name in enumerate(header) if name not in VARYING]
    return [header[index] for index in kept], [[row[index] for index in kept] for row in rows]


@pytest.fixture(scope="module")
def fault_data(tmp_path_factory):
    """(a tiny image folder, the history of an uninterrupted 3-epoch run on it without the clock columns)."""
    from fruitkeras.training import train_architecture

    root = tmp_path_factory.mktemp("faults")
    data = make_image_folders(root / "fruits", train_per_class=20, test_per_class=4)
    reference = root / "uninterrupted"
    train_architecture(TINY_ARCHITECTURE, data=str(data), run_dir=reference, epochs=EPOCHS, seed=SEED, verbose=0)
    return data, history_without_clock(reference)


def temporaries(run_dir):
    from fruitkeras.files import TEMPORARY_MARK

    return sorted(path.name for path in run_dir.rglob(f".*{TEMPORARY_MARK}*"))
