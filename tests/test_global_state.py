"""Nothing a call leaves behind changes a later one: compiled functions, models, policies, folders, versions."""

import gc
import json
import weakref
from pathlib import Path

import keras
import matplotlib
import numpy as np
import pytest

from conftest import TINY_ARCHITECTURE
from fruitkeras import forward
from fruitkeras.errors import FruitkerasError
from fruitkeras.explain import METHODS
from fruitkeras.layers import BatchNorm


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
        BatchNorm(),
        keras.layers.Activation("relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])


def images(count=2, seed=0):
    return np.random.default_rng(seed).random((count, 12, 12, 3)).astype(np.float32)


@pytest.mark.parametrize("name", ["gradient", "gradcam", "integrated"])
def test_each_method_traces_once_per_model(name):
    """Repeated calls (the page's requests) reuse one compiled function; once, every call traced anew."""
    model = small_model()
    for seed in range(3):
        METHODS[name](model, images(seed=seed), [seed % 3, 0])
    kept = forward._COMPILED[model]
    traced = {key: function.experimental_get_tracing_count() for key, function in kept.items()
              if hasattr(function, "experimental_get_tracing_count")}
    assert traced and all(count == 1 for count in traced.values()), traced


def test_kept_functions_and_engines_do_not_keep_their_model_alive():
    model = small_model()
    for name, options in (("gradient", {}), ("gradcam", {}), ("integrated", {"steps": 4}),
                          ("occlusion", {"patch": 3, "batch_size": 16}), ("smoothgrad", {"samples": 2})):
        METHODS[name](model, images(), None, **options)
    gone = weakref.ref(model)
    assert len(forward._COMPILED[model]) >= 5
    del model
    gc.collect()
    assert gone() is None


def test_faithfulness_randomised_copies_are_released():
    from fruitkeras.explain.faithfulness import randomisation_correlations

    model = small_model()
    gc.collect()
    before = len(forward._COMPILED)
    randomisation_correlations(model, METHODS["occlusion"], images(), [0, 1], patch=3, batch_size=16)
    gc.collect()
    assert len(forward._COMPILED) == before + 1  # the trained model's own engine; the copies' are gone


def test_mixed_precision_is_scoped_to_its_training(image_folders, tmp_path):
    from fruitkeras.training import train_architecture

    assert keras.mixed_precision.global_policy().name == "float32"
    mixed = train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=tmp_path / "mixed", epochs=1, verbose=0,
                               mixed_precision=True)
    assert keras.mixed_precision.global_policy().name == "float32"
    plain = train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=tmp_path / "plain", epochs=1, verbose=0)
    records = [json.loads((run / "run.json").read_text())["distribute"] for run in (mixed, plain)]
    assert [r["mixed_precision"] for r in records] == ["mixed_bfloat16", None]
    model = keras.models.load_model(plain / "model.keras")
    assert model.layers[0].dtype_policy.name == "float32"


def test_figures_leave_matplotlib_backend_alone(trained_run, tmp_path, monkeypatch):
    """The package draws on bare Figures; choosing a backend is the caller's business."""
    import pandas as pd

    from fruitkeras.comparison import compare_runs
    from fruitkeras.evaluation import evaluate
    from fruitkeras.evaluation_report import write_report
    from fruitkeras.runs import load_model
    from fruitkeras.figures import plot_learning_curves

    chosen = []
    monkeypatch.setattr(matplotlib, "use", lambda *args, **kwargs: chosen.append(args))
    model, metadata = load_model(trained_run["model"])
    write_report(evaluate(model, metadata, trained_run["data"]), tmp_path / "report", trained_run["model"],
                 trained_run["data"])
    plot_learning_curves(trained_run["run_dir"] / "history.csv", tmp_path / "curves.png")
    compare_runs([trained_run["run_dir"]], out=tmp_path / "compare")
    assert chosen == []
    assert len(pd.read_csv(tmp_path / "report" / "test_per_class.csv")) == 3


def test_a_workers_temporary_folder_goes_however_training_ends(tmp_path):
    from fruitkeras.training import _writing_dir

    with pytest.raises(KeyboardInterrupt):
        with _writing_dir(tmp_path / "run", chief=False, resume=False) as folder:
            (folder / "history.csv").write_text("epoch\n")
            raise KeyboardInterrupt
    assert not folder.exists()
    with _writing_dir(tmp_path / "run", chief=True, resume=False) as folder:
        assert folder == tmp_path / "run"


def test_page_keeps_only_the_newest_request_folders(tmp_path):
    from fruitkeras.webapp import RequestFolders

    folders = RequestFolders(tmp_path, keep=3)
    made = [folders.new() for _ in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in made[-3:])


@pytest.mark.parametrize("version, accepted", [("3.15.1", True), ("3.15.0", True), ("3.16.0", False),
                                               ("3.14.2", False), ("4.0.0", False)])
def test_multi_worker_patch_checks_the_keras_version(version, accepted):
    from fruitkeras.distribute import check_patched_keras

    if accepted:
        check_patched_keras(version)
    else:
        with pytest.raises(FruitkerasError, match=f"tested on Keras 3.15.x only; this is Keras {version}"):
            check_patched_keras(version)
    check_patched_keras()  # the installed Keras is one the suite runs on
