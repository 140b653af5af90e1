"""Model files outside fruitkeras's own loader, and which model a command picks."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import RECIPE_TINY
from fruitkeras.cli import main

LOAD_AND_EVALUATE = """
import sys
{imports}
import numpy as np
model = keras.models.load_model(sys.argv[1])  # compiled: loss and optimizer come back
assert model.optimizer is not None and model.compiled, "not compiled"
print(type(model.loss).__name__)
x = np.random.default_rng(0).random((6, 32, 32, 3)).astype("float32")
print(model.evaluate(x, np.array([0, 1, 2, 0, 1, 2]), verbose=0))
import fruitkeras  # and the notebook's two lines, from the run folder
ours, info = fruitkeras.load_model(sys.argv[2])
print(info["class_names"], ours.output_shape)
"""


@pytest.fixture(scope="module")
def smoothed_run(tmp_path_factory):
    """A one-epoch run of the recipe (label smoothing, AdamW)."""
    from conftest import make_image_folders
    from fruitkeras.training import train_architecture

    base = tmp_path_factory.mktemp("smoothed")
    architecture = base / "recipe.json"
    architecture.write_text(json.dumps({**RECIPE_TINY, "training": {**RECIPE_TINY["training"], "epochs": 1}}))
    return train_architecture(architecture, data=str(make_image_folders(base / "fruits")), run_dir=base / "run", verbose=0)


@pytest.mark.parametrize("imports", ["import fruitkeras\nimport keras", "import keras\nimport fruitkeras",
                                     "import fruitkeras\nimport tensorflow\nimport keras"])
def test_plain_keras_loads_a_run_compiled_after_import_fruitkeras(smoothed_run, imports):
    """In a fresh interpreter, whichever of the two imports comes first, TensorFlow's too (it looks Keras up
    before importing it); then a notebook's ``fruitkeras.load_model`` of the run folder."""
    result = subprocess.run([sys.executable, "-c", LOAD_AND_EVALUATE.format(imports=imports),
                             str(smoothed_run / "model.keras"), str(smoothed_run)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    loss_name, values, notebook = result.stdout.strip().splitlines()[-3:]
    assert notebook == "['cherry', 'kiwi', 'plum'] (None, 3)"
    assert loss_name == "SmoothedSparseCrossEntropy"
    loss, accuracy = json.loads(values)
    assert loss > 0 and 0 <= accuracy <= 1


def test_importing_fruitkeras_and_its_cli_loads_no_tensorflow():
    """`fruitkeras --help` stays fast: neither the package, the command line nor the explanation registry's
    options (a fill and a baseline parsed) import TensorFlow or Keras."""
    code = ("import fruitkeras, fruitkeras.cli, sys\n"
            "from fruitkeras.explain.registry import METHOD, ExplainOptions\n"
            "options = ExplainOptions(fill='0.2,0.3,0.4', baseline='grey')\n"
            "assert list(METHOD['occlusion'].options(options, None)['fill']) == [0.2, 0.3, 0.4]\n"
            "METHOD['integrated'].options(options, None)\n"
            "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_smoothed_loss_round_trips_its_settings():
    from fruitkeras.losses import SmoothedSparseCrossEntropy

    again = SmoothedSparseCrossEntropy.from_config(SmoothedSparseCrossEntropy(7, 0.2).get_config())
    assert (again.num_classes, again.label_smoothing) == (7, 0.2)


def add_run(runs_dir, source, name, finished_at, finished=True):
    """A copy of ``source`` under ``runs_dir`` that finished (or started, unfinished) at ``finished_at``."""
    folder = shutil.copytree(source, runs_dir / name)
    record = json.loads((folder / "run.json").read_text())
    record["started"] = record["finished"] = finished_at
    if not finished:
        del record["finished"]
        (folder / "model.keras").unlink()
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_commands_name_the_model_they_use_and_warn_about_newer_runs(trained_run, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    add_run(runs, trained_run["run_dir"], "older", "2026-01-01T10:00:00+00:00")
    add_run(runs, trained_run["run_dir"], "newest", "2026-01-02T10:00:00+00:00")
    image = str(next((trained_run["data"] / "Test" / "kiwi").iterdir()))

    result = runner.invoke(main, ["predict", image, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "model: runs/newest/model.keras (the newest finished run in runs/" in result.stderr
    assert "warning" not in result.stderr
    json.loads(result.stdout)  # stdout stays machine-readable

    result = runner.invoke(main, ["predict", image, "--format", "csv", "--model", "runs/older"])
    assert result.exit_code == 0, result.output
    assert "model: runs/older/model.keras" in result.stderr
    assert "warning: older is not the newest finished run in runs/: newest finished later" in result.stderr
    assert result.stdout.startswith("image,rank,class,probability")

    add_run(runs, trained_run["run_dir"], "smoke", "2026-01-03T10:00:00+00:00", finished=False)
    for command in (["predict", image], ["explain", image, "--out", str(tmp_path / "maps")],
                    ["eval", "--data", str(trained_run["data"]), "--out", str(tmp_path / "report")]):
        result = runner.invoke(main, command)
        assert result.exit_code == 0, result.output
        assert "runs/newest/model.keras" in result.output
        assert "warning: smoke started later but is unfinished; it is never used by default" in result.stderr
