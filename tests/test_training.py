"""End to end through the command line: train, eval, resume, refusals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, TINY_ARCHITECTURE, copy_run, picture
from fruitkeras.cli import main
from fruitkeras.errors import TrainingInterrupted
from fruitkeras.runs import load_model
from fruitkeras.architecture import TRAINING_FIELDS
from fruitkeras.training import _optimizer, train_architecture


def test_train_writes_a_complete_run(trained_run):
    run_dir = trained_run["run_dir"]
    for name in ("model.keras", "history.csv", "architecture.json", "run.json", "learning_curves.png"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "backup").exists()
    assert (run_dir / "architecture.json").read_text() == TINY_ARCHITECTURE.read_text()


def test_history_has_every_epoch_with_timestamps(trained_run):
    history = pd.read_csv(trained_run["run_dir"] / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]  # as the console and the plot count
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "timestamp",
            "epoch_seconds"} <= set(history.columns)
    times = [datetime.fromisoformat(stamp) for stamp in history["timestamp"]]
    assert all(t.tzinfo is not None for t in times)
    assert times == sorted(times)
    assert (history["epoch_seconds"] > 0).all()
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()


def test_saved_model_loads_with_class_names(trained_run):
    model, metadata = load_model(trained_run["model"])
    assert metadata["class_names"] == ["cherry", "kiwi", "plum"]
    assert metadata["input_size"] == [32, 32]
    assert len(metadata["mean_colour"]) == 3
    assert model.output_shape == (None, 3)
    # A plain Keras load works too: the extra metadata member does not disturb it.
    plain = keras.models.load_model(trained_run["model"], compile=False)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model(x, training=False), plain(x, training=False))


def test_eval_prints_accuracy_and_writes_reports(trained_run, runner, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--data", str(trained_run["data"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test accuracy:" in result.output
    per_class = pd.read_csv(out / "test_per_class.csv")
    assert per_class["class"].tolist() == ["cherry", "kiwi", "plum"]
    assert per_class["images"].tolist() == [5, 5, 5]
    # The reports against the model's own answers, counted here from Keras's predict on the Test photos.
    from fruitkeras import data as datalib

    model, _ = load_model(trained_run["model"])
    split = datalib.read_split(trained_run["data"] / "Test", (32, 32))
    answers = model.predict(split.images.astype("float32") * np.float32(datalib.PIXEL_SCALE), verbose=0).argmax(1)
    expected = np.zeros((3, 3), dtype=int)
    np.add.at(expected, (split.labels, answers), 1)
    confusion = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    assert confusion.index.tolist() == confusion.columns.tolist() == split.class_names
    np.testing.assert_array_equal(confusion.to_numpy(), expected)
    np.testing.assert_allclose(per_class["accuracy"], np.diag(expected) / expected.sum(axis=1), atol=5e-5)
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(np.mean(answers == split.labels))
    assert f"test accuracy: {metrics['accuracy']:.4f}" in result.output
    assert picture(out / "confusion_matrix.png")[:2] == (760, 400)  # matrix and bars side by side, at 100 dpi
    assert picture(out / "confusion_matrix.png")[2] > 50


def test_eval_of_a_run_without_data_uses_the_runs_own_data(trained_run, runner, tmp_path, monkeypatch):
    """The command train prints last, as it is: the data folder comes from run.json; one that is gone is the old
    one-line error."""
    monkeypatch.delenv("FRUITKERAS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data here
    out = tmp_path / "report"
    given = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--data", str(trained_run["data"]),
                                 "--out", str(tmp_path / "given")])
    result = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"data: {trained_run['data'].resolve()}, the run's own" in result.output
    assert (json.loads((out / "test_metrics.json").read_text())["accuracy"]
            == json.loads((tmp_path / "given" / "test_metrics.json").read_text())["accuracy"])
    copied = tmp_path / "copied-run"
    shutil.copytree(trained_run["run_dir"], copied)
    record = json.loads((copied / "run.json").read_text())
    record["data"] = str(tmp_path / "gone")
    (copied / "run.json").write_text(json.dumps(record))
    gone = runner.invoke(main, ["eval", str(copied), "--out", str(tmp_path / "x")])
    assert gone.exit_code == 1 and gone.output.startswith("error: no dataset folder found"), gone.output
    assert given.exit_code == 0, given.output


def test_eval_accuracy_matches_keras_evaluate(trained_run, runner, tmp_path):
    """Our evaluation loop against Keras's own on the same images."""
    from fruitkeras import data as datalib

    result = runner.invoke(main, ["eval", str(trained_run["model"]), "--data", str(trained_run["data"]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    model, _ = load_model(trained_run["model"])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    split = datalib.read_split(trained_run["data"] / "Test", (32, 32))
    loss, accuracy = model.evaluate(datalib.make_dataset(split, 4), verbose=0)
    ours = json.loads((tmp_path / "test_metrics.json").read_text())
    assert ours["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert ours["loss"] == pytest.approx(loss, rel=1e-3, abs=1e-5)


def batch_statistics_reference(model, images):
    """Probabilities with every BatchNorm normalising by the batch's own statistics, through TensorFlow's
    own moments and batch normalisation (the reference; the package never uses them)."""
    import tensorflow as tf

    from fruitkeras.layers import BatchNorm

    features = tf.constant(images)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            mean, variance = tf.nn.moments(features, axes=list(range(len(features.shape) - 1)))
            features = tf.nn.batch_normalization(features, mean, variance, layer.beta, layer.gamma, layer.epsilon)
        else:
            features = layer(features, training=False)
    return features.numpy()


def test_bn_train_mode_computes_batch_statistics_whatever_ran_before(trained_run):
    """The mode is part of the call: normal, batch-statistics and normal again in one process, both orders."""
    from fruitkeras import data as datalib
    from fruitkeras.evaluation import evaluate

    model, metadata = load_model(trained_run["model"])
    split = datalib.read_split(trained_run["data"] / "Test", (32, 32))  # 15 images: one batch of 64
    order = np.random.default_rng(0).permutation(len(split))  # as evaluate shuffles for this mode
    images = split.images[order].astype(np.float32) / 255
    moving = model.predict(images, verbose=0)
    batch = batch_statistics_reference(model, images)
    assert np.abs(moving - batch).max() > 1e-3  # the two modes differ on this model
    for modes in ([False, True, False], [True, False, True]):
        fresh, _ = load_model(trained_run["model"])
        for mode in modes:
            probabilities = evaluate(fresh, metadata, trained_run["data"], bn_train_mode=mode).probabilities
            np.testing.assert_allclose(probabilities, batch if mode else moving[np.argsort(order)], atol=1e-5)


def test_eval_bn_train_mode_keeps_the_standard_report(trained_run, runner, tmp_path):
    run_dir = copy_run(trained_run["run_dir"], tmp_path / "run")
    standard = runner.invoke(main, ["eval", str(run_dir), "--data", str(trained_run["data"])])
    assert standard.exit_code == 0, standard.output
    kept = {name: (run_dir / name).read_bytes() for name in ("test_metrics.json", "test_per_class.csv",
                                                             "confusion_matrix.csv", "test_mistakes.csv")}
    result = runner.invoke(main, ["eval", str(run_dir), "--data", str(trained_run["data"]), "--bn-train-mode"])
    assert result.exit_code == 0, result.output
    assert "[batch statistics]" in result.output
    for name, content in kept.items():
        assert (run_dir / name).read_bytes() == content, name
    other = json.loads((run_dir / "test_metrics-batch-statistics.json").read_text())
    assert other["batch_norm"] == "batch statistics"
    for name in ("test_per_class", "confusion_matrix", "test_mistakes"):
        assert (run_dir / f"{name}-batch-statistics.csv").is_file()
    assert json.loads(kept["test_metrics.json"])["batch_norm"] == "moving statistics"
    from fruitkeras.runs import describe_runs

    row = describe_runs(tmp_path)[0]
    assert row["test_accuracy"] == json.loads(kept["test_metrics.json"])["accuracy"]


def test_runs_shows_the_logged_test_accuracy_before_eval_and_a_damaged_model(trained_run, runner, tmp_path):
    run_dir = copy_run(trained_run["run_dir"], tmp_path / "runs" / "tiny")
    for name in ("test_metrics.json", "test_per_class.csv", "confusion_matrix.csv", "test_mistakes.csv"):
        (run_dir / name).unlink(missing_ok=True)
    history = pd.read_csv(run_dir / "history.csv")
    listed = runner.invoke(main, ["runs", str(tmp_path / "runs")])
    assert listed.exit_code == 0, listed.output
    row = listed.output.splitlines()[1].split()
    assert row[row.index("finished") + 1:row.index("finished") + 4] == [
        f"{history['test_accuracy'].iloc[-1]:.4f}", "logged,", "epoch"]
    # A model file cut short (a full disk, a copy stopped half-way) is not a finished run.
    model = (run_dir / "model.keras").read_bytes()
    (run_dir / "model.keras").write_bytes(model[: len(model) // 2])
    listed = runner.invoke(main, ["runs", str(tmp_path / "runs")])
    assert "damaged model" in listed.output and " finished " not in listed.output, listed.output


def test_interrupted_training_resumes_without_losing_epochs(image_folders, runner, tmp_path):
    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    run_dir = tmp_path / "runs" / "resumable"
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=run_dir, epochs=4, verbose=0,
                           extra_callbacks=[StopAfterSecondEpoch()])
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [1, 2]
    assert not (run_dir / "model.keras").exists()

    again = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir", str(run_dir), "--quiet"])
    assert again.exit_code == 1 and "--resume" in again.output

    resumed = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert json.loads((run_dir / "run.json").read_text())["resumed"][0]["after_epoch"] == 2
    assert (run_dir / "model.keras").exists() and not (run_dir / "backup").exists()


def test_finished_run_is_never_overwritten(trained_run, runner, tmp_path):
    run_dir = copy_run(trained_run["run_dir"], tmp_path / "finished")
    before = (run_dir / "model.keras").read_bytes()
    for extra in ([], ["--resume"]):
        result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(trained_run["data"]), "--run-dir", str(run_dir)] + extra)
        assert result.exit_code == 1
        assert "already holds a finished run" in result.output
    assert (run_dir / "model.keras").read_bytes() == before


def test_limit_per_class_and_epochs_override(image_folders, runner, tmp_path):
    run_dir = tmp_path / "small"
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir", str(run_dir), "--epochs", "1", "--limit-per-class", "5", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["train_images"] + record["validation_images"] == 15
    assert len(pd.read_csv(run_dir / "history.csv")) == 1


def test_data_from_environment_variable(image_folders, runner, tmp_path, monkeypatch):
    monkeypatch.setenv("FRUITKERAS_DATA", str(image_folders))
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(tmp_path / "env"), "--epochs", "1", "--limit-per-class", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "env" / "run.json").read_text())["data"] == str(image_folders)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d, t: ["train", str(t / "none.json"), "--data", str(d)], "architecture file not found"),
        (lambda d, t: ["train", str(TINY_ARCHITECTURE), "--data", str(t / "nowhere")], "no dataset folder found"),
        (lambda d, t: ["eval", str(t / "missing.keras"), "--data", str(d)], "no such model file"),
        (lambda d, t: ["eval", str(d / "Test" / "kiwi" / "0_100.jpg"), "--data", str(d)], "not a Keras model file"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(image_folders, runner, tmp_path, make_args, message):
    result = runner.invoke(main, make_args(image_folders, tmp_path))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert message in result.output


def test_train_refuses_mismatched_test_classes(image_folders, runner, tmp_path):
    (image_folders / "Test" / "kiwi").rename(image_folders / "Test" / "lime")
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "class mismatch between Training/ and Test/" in result.output


def test_eval_refuses_model_data_class_mismatch(trained_run, image_folders, runner):
    (image_folders / "Test" / "kiwi").rename(image_folders / "Test" / "lime")
    result = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--data", str(image_folders)])
    assert result.exit_code == 1
    assert "class mismatch between the model and" in result.output and "lime" in result.output


def test_console_script_errors_without_traceback(tmp_path):
    """The installed command, as a user runs it: stderr is one line, no traceback."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"input": {"height": 10, "width": 10}, "layers": [{"type": "conv", "filters": 0}]}')
    result = subprocess.run([sys.executable, "-m", "fruitkeras.cli", "train", str(bad), "--data", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == f"error: {bad}: layer 1 (conv): 'filters' must be a positive integer, got 0\n"
    assert "Traceback" not in result.stdout


def test_help_has_examples(runner):
    for command in ("train", "eval", "explain"):
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output


def test_non_square_inputs_train_predict_and_explain(image_folders, architecture_file, runner, tmp_path):
    """A 24x40 input: the data, the model, every explanation method and the occlusion grid keep height != width."""
    source = json.loads(TINY_ARCHITECTURE.read_text())
    source["input"] = {"height": 24, "width": 40}
    run_dir = train_architecture(architecture_file(source, "wide.json"), data=str(image_folders), run_dir=tmp_path / "wide",
                                 epochs=1, verbose=0)
    model, metadata = load_model(run_dir / "model.keras")
    assert metadata["input_size"] == [24, 40] and model.input_shape == (None, 24, 40, 3)
    image = next((image_folders / "Test" / "plum").iterdir())
    out = tmp_path / "maps"
    result = runner.invoke(main, ["explain", str(image), "--model", str(run_dir), "--method", "all", "--stride", "3",
                                  "--patch", "5", "--samples", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for method in ("gradient", "smoothgrad", "gradxinput", "occlusion", "gradcam", "integrated"):
        assert np.load(next(out.glob(f"*_{method}-*.npy"))).shape == (24, 40), method
    predicted = runner.invoke(main, ["predict", str(image), "--model", str(run_dir), "--format", "json"])
    assert predicted.exit_code == 0, predicted.output
    assert len(json.loads(predicted.stdout)[0]["top"]) == 3


def test_a_loss_that_turns_nan_fails_the_run_and_no_command_takes_it_for_a_model(image_folders, runner, tmp_path):
    run_dir = tmp_path / "runs" / "exploded"
    # SGD at 1e30: the first step's weights overflow, and the loss is NaN from then on.
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir",
                                  str(run_dir), "--epochs", "3", "--quiet", "--set", "training.optimizer=sgd",
                                  "--set", "training.learning_rate=1e30"])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: training failed: the loss became nan in epoch 1") and "marked failed" in error
    assert "Traceback" not in result.output
    assert json.loads((run_dir / "run.json").read_text())["failed"] == {"epoch": 1, "loss": "nan"}
    assert not (run_dir / "model.keras").exists()
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [1]  # it stopped there

    listed = runner.invoke(main, ["runs", str(tmp_path / "runs")])
    assert listed.exit_code == 0 and "failed" in listed.output and "finished" not in listed.output
    predicted = runner.invoke(main, ["predict", str(image_folders / "Test"), "--model", str(run_dir)])
    assert predicted.exit_code == 1 and "is a failed run (the loss became nan in epoch 1)" in predicted.output
    resumed = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume"])
    assert resumed.exit_code == 1 and "is a failed run" in resumed.output and "finished" not in resumed.output


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_missing_image_or_model_is_said_before_tensorflow_is_imported(command, trained_run, tmp_path):
    """Said at once: the process never imports TensorFlow (5 s here) to find that a file is missing."""
    probe = ("import sys\nfrom fruitkeras.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as end:\n"
             "    print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow', end.code)\n")
    for args, message in (
        ([str(tmp_path / "gone.jpg"), "--model", str(trained_run["run_dir"])], f"{tmp_path / 'gone.jpg'}: no such file or folder"),
        ([str(REPO / "samples" / "Banana_1.jpg"), "--model", str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'}"),
    ):
        result = subprocess.run([sys.executable, "-c", probe, command, *args], capture_output=True, text=True,
                                timeout=120, cwd=tmp_path)
        assert result.stdout.strip().endswith("no tensorflow 1"), result.stdout + result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_ctrl_c_after_the_last_epoch_leaves_an_unfinished_run_that_resume_completes(image_folders, runner, tmp_path):
    """A real SIGINT while the verdict's statistics are fitted (about 2 minutes on the 77-class set).

    The probe makes that stage wait, so that the signal lands inside it; what is checked is the real folder,
    the real commands and the real --resume.
    """
    started = tmp_path / "statistics-started"
    probe = ("import os, sys, time\nimport fruitkeras.familiarity as familiarity\nfit = familiarity.fit\n"
             "def waiting(*args, **kwargs):\n    open(os.environ['STARTED'], 'w').close()\n    time.sleep(120)\n"
             "    return fit(*args, **kwargs)\nfamiliarity.fit = waiting\nfrom fruitkeras.cli import main\nmain(sys.argv[1:])\n")
    run_dir = tmp_path / "runs" / "cut"
    process = subprocess.Popen([sys.executable, "-c", probe, "train", str(TINY_ARCHITECTURE), "--data", str(image_folders),
                                "--run-dir", str(run_dir), "--epochs", "2", "--quiet"], env={**os.environ, "STARTED": str(started)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130  # as for a Ctrl-C during the epochs
    assert stderr.startswith("error: interrupted after the last epoch, before the run was finished") and "--resume" in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert (run_dir / "model.keras").exists() and not (run_dir / "familiarity.npz").exists()
    assert "finished" not in json.loads((run_dir / "run.json").read_text())

    listed = runner.invoke(main, ["runs", str(tmp_path / "runs")])
    assert "interrupted" in listed.output and "finished" not in listed.output
    predicted = runner.invoke(main, ["predict", str(image_folders / "Test"), "--model", str(run_dir)])
    assert predicted.exit_code == 1 and "is an unfinished run (stopped after its last epoch" in predicted.output
    again = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir", str(run_dir)])
    assert again.exit_code == 1 and "--resume" in again.output

    resumed = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert (run_dir / "familiarity.npz").exists() and (run_dir / "learning_curves.png").exists()
    assert json.loads((run_dir / "run.json").read_text())["finished"]
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [1, 2]  # no epoch trained twice
    assert "finished" in runner.invoke(main, ["runs", str(tmp_path / "runs")]).output
    predicted = runner.invoke(main, ["predict", str(image_folders / "Test"), "--model", str(run_dir)])
    assert predicted.exit_code == 0, predicted.output


def test_eval_on_other_data_leaves_the_runs_recorded_result_byte_identical(trained_run, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = copy_run(trained_run["run_dir"], tmp_path / "runs" / "proof")
    own = runner.invoke(main, ["eval", str(run_dir), "--data", str(trained_run["data"])])  # the data it records
    assert own.exit_code == 0, own.output
    recorded = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert "test_metrics.json" in recorded

    other = shutil.copytree(trained_run["data"], tmp_path / "other-photos")
    (other / "Test" / "kiwi" / sorted(p.name for p in (other / "Test" / "kiwi").iterdir())[0]).unlink()
    result = runner.invoke(main, ["eval", str(run_dir), "--data", str(other)])
    assert result.exit_code == 0, result.output
    assert "is not the data this run was trained on" in result.output
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == recorded
    reports = tmp_path / "evaluations" / "proof-on-other-photos"
    assert json.loads((reports / "test_metrics.json").read_text())["images"] == 14
    assert json.loads((run_dir / "test_metrics.json").read_text())["images"] == 15
    # `runs` names the data its figure came from.
    listed = runner.invoke(main, ["runs", str(tmp_path / "runs")]).output
    assert f" on {trained_run['data'].name}" in listed
    # The shipped run evaluated on other data writes under evaluations/, which git ignores: `git status` stays clean.
    ignored = subprocess.run(["git", "check-ignore", "-q", "evaluations/fruits77-vgg_small-on-other/test_metrics.json"],
                             cwd=REPO)
    assert ignored.returncode == 0


@pytest.mark.parametrize("first_cycle_epochs", [0, 1, 2])
def test_a_first_cycle_anneals_to_zero_then_restarts_at_the_full_rate(first_cycle_epochs):
    """Cosine over 4 epochs of 10 steps: one decay (0), or a decay over the first cycle, a restart at the
    full rate, and a second decay that ends with the last step."""
    settings = {field: default for field, (_, default) in TRAINING_FIELDS.items()}
    settings.update(learning_rate=0.004, schedule="cosine", first_cycle_epochs=first_cycle_epochs)
    optimizer = _optimizer(settings, steps_per_epoch=10, epochs=4)
    rates = []
    for step in range(40):  # the rate each training step uses
        optimizer.iterations.assign(step)
        rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    cycle = 10 * first_cycle_epochs or 40
    assert rates[0] == pytest.approx(0.004)
    assert np.all(np.diff(rates[:cycle]) < 0) and rates[cycle - 1] < 0.004 * 0.05
    if first_cycle_epochs:
        assert rates[cycle] == pytest.approx(0.004)  # the restart
        assert np.all(np.diff(rates[cycle:]) < 0) and rates[-1] < 0.004 * 0.05
