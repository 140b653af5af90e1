"""What a new user tripped over: resume, Ctrl-C, messages, predict, runs, the fresh-clone default."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import REPO, TINY_ARCHITECTURE, copy_run, make_image_folders
from fruitkeras import run_lock
from fruitkeras.checkpoint import EpochCommit
from fruitkeras.cli import main
from fruitkeras.errors import TrainingInterrupted
from fruitkeras.training import train_architecture


class SignalAt(keras.callbacks.Callback):
    """Sends this process a real SIGINT at one moment of training."""

    def __init__(self, moment, epoch=0):
        super().__init__()
        self.moment, self.epoch = moment, epoch

    def _send(self):
        os.kill(os.getpid(), signal.SIGINT)

    def on_train_batch_end(self, batch, logs=None):
        if self.moment == "mid-epoch" and self.epoch_now == self.epoch and batch == 1:
            self._send()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_now = epoch

    def on_epoch_end(self, epoch, logs=None):  # runs after the CSV row is written: extra callbacks come last
        if self.moment == "after-log-row" and epoch == self.epoch:
            self._send()


@pytest.mark.parametrize("moment, kept", [("mid-epoch", 1), ("after-log-row", 1), ("backup-write", 1)])
def test_ctrl_c_at_any_moment_stops_keeps_epochs_and_resumes(image_folders, runner, tmp_path, monkeypatch, moment, kept):
    run_dir = tmp_path / "run"
    if moment == "backup-write":  # the signal lands while the epoch's backup is written
        original = EpochCommit._write_backup

        def interrupted_write(self, epoch):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return original(self, epoch)

        monkeypatch.setattr(EpochCommit, "_write_backup", interrupted_write)
    epoch = 1 if moment == "mid-epoch" else 0
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when started in the background
    with pytest.raises(TrainingInterrupted) as stopped:
        train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=run_dir, epochs=4, verbose=0,
                           extra_callbacks=[SignalAt(moment, epoch)])
    assert stopped.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == list(range(1, kept + 1))
    assert not (run_dir / "model.keras").exists()
    monkeypatch.undo()
    resumed = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]


def test_ctrl_c_to_the_real_command_exits_130_on_a_line_of_its_own(tmp_path):
    data = make_image_folders(tmp_path / "fruits", train_per_class=30, test_per_class=3)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "fruitkeras.cli", "train", str(TINY_ARCHITECTURE), "--data", str(data),
               "--run-dir", str(run_dir), "--epochs", "200"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            history = run_dir / "history.csv"
            if history.exists() and len(history.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.startswith("error: training interrupted; finished epochs are kept in") and err.count("\n") == 1
    assert "\x1b" not in out and "\r" not in out  # not a terminal: plain lines
    assert "epoch 1/200  loss" in out
    assert not (run_dir / "model.keras").exists()
    finished = len(pd.read_csv(run_dir / "history.csv"))
    # The files a real SIGINT left resume (in this process: the signal, not the resume, needed a fresh one).
    resumed = CliRunner().invoke(main, command[3:-2] + ["--epochs", str(finished + 1), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == list(range(1, finished + 2))


def test_progress_bar_line_is_ended_before_the_interrupt_message(image_folders, tmp_path, capsys):
    with pytest.raises(TrainingInterrupted):
        train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=tmp_path / "run", epochs=3, verbose=2,
                           extra_callbacks=[SignalAt("mid-epoch", 0)])
    assert capsys.readouterr().out.endswith("\n")


def test_resume_from_another_folder_uses_the_stored_absolute_paths(tmp_path, monkeypatch, runner):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    make_image_folders(start / "fruits")
    monkeypatch.chdir(start)
    with pytest.raises(TrainingInterrupted):  # relative --data and --run-dir, as a user types them
        train_architecture(TINY_ARCHITECTURE, data="fruits", run_dir="runs/r", epochs=3, verbose=0,
                           extra_callbacks=[SignalAt("after-log-row", 0)])
    record = json.loads((start / "runs/r/run.json").read_text())
    assert record["data"] == str(start / "fruits") and os.path.isabs(record["architecture_file"])
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(start / "runs/r"), "--resume"])
    assert result.exit_code == 0, result.output
    # A dataset that moved away is named with where its path came from.
    (start / "fruits").rename(start / "moved")
    again = copy_run(start / "runs/r", tmp_path / "copy")
    (again / "model.keras").unlink()
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(again), "--resume"])
    assert result.exit_code == 1
    assert f"dataset folder {start / 'fruits'} (from {again / 'run.json'}) not found" in result.output


@pytest.mark.parametrize("option, value, stored", [("--seed", "5", "0"), ("--limit-per-class", "3", "None"),
                                                   ("--no-test-eval", None, "True")])
def test_resume_refuses_options_that_conflict_with_the_run(image_folders, runner, tmp_path, option, value, stored):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=run_dir, epochs=3, verbose=0,
                           extra_callbacks=[SignalAt("after-log-row", 0)])
    args = ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", option] + ([value] if value else [])
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "conflicts with the run's own" in result.output and f" {stored} (" in result.output
    assert "--resume continues with the stored value" in result.output


def test_train_checks_test_split_at_the_start(image_folders, runner, tmp_path):
    for image in (image_folders / "Test" / "kiwi").iterdir():
        image.unlink()
    run_dir = tmp_path / "run"
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir", str(run_dir)])
    assert result.exit_code == 1
    assert "Test/kiwi: class 'kiwi' has no image files" in result.output
    assert not run_dir.exists()  # refused before any training


def test_eval_without_runs_gives_advice_that_works(runner, tmp_path, monkeypatch, image_folders):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["eval", "--data", str(image_folders)])
    assert result.exit_code == 1
    assert "--model" not in result.output and "name a run folder or model file" in result.output


def test_truncated_model_file_is_called_damaged(trained_run, runner, tmp_path):
    cut = tmp_path / "cut.keras"
    data = trained_run["model"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    result = runner.invoke(main, ["eval", str(cut), "--data", str(trained_run["data"])])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "damaged or incomplete model file" in result.output


def test_output_that_is_not_a_terminal_is_one_plain_line_per_epoch(trained_run, image_folders, runner, tmp_path):
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders),
                                  "--run-dir", str(tmp_path / "r"), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("test_accuracy" in line and "val_accuracy" in line for line in lines)
    assert "\x1b" not in result.output and "\r" not in result.output and "━" not in result.output


def test_test_metrics_are_logged_each_epoch_and_match_eval(trained_run, runner, tmp_path):
    history = pd.read_csv(trained_run["run_dir"] / "history.csv")
    out = tmp_path / "report"
    result = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--data", str(trained_run["data"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    final = json.loads((out / "test_metrics.json").read_text())
    assert history["test_accuracy"].iloc[-1] == pytest.approx(final["accuracy"], abs=1e-6)
    assert history["test_loss"].iloc[-1] == pytest.approx(final["loss"], rel=1e-4)


def test_no_test_eval_leaves_the_columns_out(image_folders, runner, tmp_path):
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir",
                                  str(tmp_path / "r"), "--epochs", "1", "--no-test-eval", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "test_accuracy" not in pd.read_csv(tmp_path / "r" / "history.csv").columns


def test_predict_formats_agree_with_the_model(trained_run, runner, tmp_path):
    from fruitkeras.data import load_image
    from fruitkeras.runs import load_model

    folder = trained_run["data"] / "Test" / "kiwi"
    # The whole photos: an unfamiliar one's classes would be guessed from its cut-out (test_familiarity.py).
    whole = ["--model", str(trained_run["run_dir"]), "--whole-photo"]
    table = runner.invoke(main, ["predict", str(folder), *whole, "--top", "2"])
    assert table.exit_code == 0, table.output
    as_json = runner.invoke(main, ["predict", str(folder), *whole, "--format", "json"])
    rows = json.loads(as_json.stdout)  # the model used is named on stderr
    model, metadata = load_model(trained_run["model"])
    images = sorted(folder.iterdir())
    assert [row["image"] for row in rows] == [str(p) for p in images]
    probabilities = model.predict(np.stack([load_image(p, (32, 32)) for p in images]), verbose=0)
    for row, expected in zip(rows, probabilities):
        assert row["top"][0]["class"] == metadata["class_names"][int(expected.argmax())]
        assert row["top"][0]["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
        assert len(row["top"]) == 3
        assert f"{row['image']}: {row['top'][0]['class']} (" in table.output
    as_csv = runner.invoke(main, ["predict", str(images[0]), "--model", str(trained_run["run_dir"]), "--format", "csv"])
    assert as_csv.stdout.splitlines()[0] == "image,rank,class,probability,verdict,familiarity,cut_out" and len(as_csv.stdout.splitlines()) == 4


def test_predict_bad_input(trained_run, runner, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff nothing")
    good = next((trained_run["data"] / "Test" / "plum").iterdir())
    (folder / "good.jpg").write_bytes(good.read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    for style in ("table", "csv", "json"):  # the readable one answered, the others named, and exit 1 in every format
        result = runner.invoke(main, ["predict", str(folder), "--model", str(trained_run["run_dir"]), "--format", style])
        assert result.exit_code == 1, result.output
        assert "broken.jpg" in result.stderr and "empty.jpg" in result.stderr and "good.jpg" in result.stdout
        assert "broken.jpg" not in result.stdout and "empty.jpg" not in result.stdout
        assert result.stderr.splitlines()[-1] == ("error: 2 of 3 images could not be read (the warnings above name "
                                                  "them); the others are answered")
    for args, message in ((["predict", str(tmp_path / "gone.jpg")], "no such file or folder"),
                          (["predict", str(folder / "broken.jpg")], "not an image file"),
                          (["predict", str(tmp_path / "*.png")], "no file matches")):
        result = runner.invoke(main, args + ["--model", str(trained_run["run_dir"])])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output


def test_predict_streams_its_answers_chunk_by_chunk(trained_run, tmp_path):
    """Each chunk is answered and written before the next is read, and the pieces join into the same answer as
    one chunk would give, in every format (json: one document)."""
    from fruitkeras.image_files import collect_images
    from fruitkeras.prediction import predict_files

    folder = tmp_path / "many"
    folder.mkdir()
    (folder / "a0_broken.jpg").write_bytes(b"\xff\xd8\xff nothing")
    photos = sorted((trained_run["data"] / "Test").rglob("*.jpg"))[:7]
    for number, photo in enumerate(photos, start=1):
        (folder / f"a{number}{photo.suffix}").write_bytes(photo.read_bytes())
    paths = collect_images([folder])
    for style in ("json", "csv", "table"):
        whole = "".join(predict_files(trained_run["model"], paths, style=style))
        assert "".join(predict_files(trained_run["model"], paths, style=style, chunk=2)) == whole
    rows = json.loads(whole := "".join(predict_files(trained_run["model"], paths, style="json")))
    assert [row["image"] for row in rows] == [str(p) for p in paths[1:]]
    pieces = predict_files(trained_run["model"], paths, style="json", chunk=2)
    first = next(pieces)  # the answer to the first chunk: the broken file and a1
    for later in paths[4:]:
        later.unlink()  # not read yet, so skipped with a warning when their chunk comes
    streamed = json.loads(first + "".join(pieces))
    assert streamed == rows[:3]


def test_runs_lists_finished_and_interrupted_runs(trained_run, image_folders, runner, tmp_path):
    runs_dir = tmp_path / "runs"
    copy_run(trained_run["run_dir"], runs_dir / "done")
    with pytest.raises(TrainingInterrupted):
        train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=runs_dir / "stopped", epochs=3, verbose=0,
                           extra_callbacks=[SignalAt("after-log-row", 0)])
    result = runner.invoke(main, ["eval", str(runs_dir / "done"), "--data", str(trained_run["data"])])
    assert result.exit_code == 0
    accuracy = json.loads((runs_dir / "done" / "test_metrics.json").read_text())["accuracy"]
    listing = runner.invoke(main, ["runs", str(runs_dir)])
    assert listing.exit_code == 0, listing.output
    lines = {line.split()[0]: line for line in listing.output.splitlines()[1:]}
    assert set(lines) == {"done", "stopped"}
    assert "tiny" in lines["done"] and " 3/3 " in lines["done"] and "finished" in lines["done"]
    assert f"{accuracy:.4f}" in lines["done"]
    assert " 1/3 " in lines["stopped"] and "interrupted" in lines["stopped"]
    # A run whose folder a live process holds (this one, here) is running, not interrupted.
    assert not (runs_dir / "stopped" / ".lock").exists()
    with run_lock.held(runs_dir / "stopped"):
        listing = runner.invoke(main, ["runs", str(runs_dir)])
    assert "running" in next(line for line in listing.output.splitlines() if line.startswith("stopped"))


SAMPLES = REPO / "samples"
SHIPPED_RUNS = sorted((REPO / "runs").glob("*/model.keras"))


@pytest.mark.skipif(not SHIPPED_RUNS, reason="no shipped run in runs/")
def test_fresh_clone_default_predicts_and_explains_the_samples(tmp_path, runner, monkeypatch):
    """From the repository root, with no options: the shipped model on the bundled photos (predict as a fresh
    process, as typed; explain in this one, from the same folder)."""
    predicted = subprocess.run([sys.executable, "-m", "fruitkeras.cli", "predict", "samples/"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    samples = sorted(p for p in SAMPLES.iterdir() if p.suffix == ".jpg")
    assert 5 <= len(samples) <= 20
    # Each sample is named after its true class; the shipped model gets them right.
    for sample in samples:
        true_class = sample.stem.rsplit("_", 1)[0].replace("_", " ")
        assert f"samples/{sample.name}: {true_class} (" in predicted.stdout
    monkeypatch.chdir(REPO)
    explained = runner.invoke(main, ["explain", f"samples/{samples[0].name}", "--out", str(tmp_path)])
    assert explained.exit_code == 0, explained.output
    assert "runs/fruits77-vgg_small/model.keras" in explained.output  # the newest run, found from the root
    assert list(tmp_path.glob("*_gradient-max-loss.png"))
