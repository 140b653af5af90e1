"""What a new user tripped over, second round: data and server errors, messages, figures, git."""

import json
import shlex
import socket
import subprocess
import time

import pandas as pd
import pytest

from conftest import REPO, TINY_ARCHITECTURE, copy_run, make_image_folders
from fruitkeras.cli import main
from fruitkeras.training import train_architecture


def one_line_error(result):
    return result.exit_code == 1 and result.output.startswith("error: ") and result.output.count("\n") == 1


def test_serve_rejects_a_data_variable_that_names_no_folder(trained_run, runner, monkeypatch, tmp_path):
    monkeypatch.setenv("FRUITKERAS_DATA", str(tmp_path / "nonexistent"))
    result = runner.invoke(main, ["serve", str(trained_run["run_dir"])])
    assert one_line_error(result), result.output
    assert f"FRUITKERAS_DATA = {tmp_path / 'nonexistent'} (no such folder)" in result.output


def test_a_busy_port_is_a_fast_one_line_error_naming_port(trained_run, runner):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = runner.invoke(main, ["serve", str(trained_run["run_dir"]), "--port", str(port)])
    assert time.monotonic() - started < 5
    assert one_line_error(result) and "choose another port with --port" in result.output
    assert "GRADIO_SERVER_PORT" not in result.output


@pytest.mark.parametrize("host", ["999.1.1.1", "192.0.2.1"])  # not an address at all; a documentation address
def test_a_host_that_is_not_this_machines_says_so_not_the_port(trained_run, runner, host):
    result = runner.invoke(main, ["serve", str(trained_run["run_dir"]), "--host", host, "--port", "7999"])
    assert one_line_error(result), result.output
    assert f"cannot serve on {host}: not an address of this machine" in result.output and "--host" in result.output
    assert "--port" not in result.output


def test_training_without_test_split_says_the_test_metrics_are_missing(runner, tmp_path):
    data = make_image_folders(tmp_path / "fruits", train_per_class=6, test_per_class=1)
    import shutil

    shutil.rmtree(data / "Test")
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir",
                                  str(tmp_path / "run"), "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"note: no {data / 'Test'}/: history.csv will have no test_loss and test_accuracy" in result.output
    assert "test_accuracy" not in pd.read_csv(tmp_path / "run" / "history.csv").columns


def test_hints_are_shell_quoted(image_folders, runner, tmp_path):
    run_dir = tmp_path / "my runs" / "first try"
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(image_folders), "--run-dir",
                                  str(run_dir), "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    hint = result.output.strip().splitlines()[-1].split("evaluate with: ", 1)[1]
    assert shlex.split(hint) == ["fruitkeras", "eval", str(run_dir)]


def test_eval_of_an_unfinished_run_says_so_and_how_to_resume(trained_run, runner, tmp_path):
    run_dir = copy_run(trained_run["run_dir"], tmp_path / "half done")
    (run_dir / "model.keras").unlink()
    result = runner.invoke(main, ["eval", str(run_dir), "--data", str(trained_run["data"])])
    assert one_line_error(result), result.output
    assert f"{run_dir} is an unfinished run (interrupted after 3 of 3 epochs)" in result.output
    command = result.output.strip().split("continue it with: ", 1)[1]
    assert shlex.split(command)[-3:] == ["--run-dir", str(run_dir), "--resume"]


def test_predict_notes_an_unfinished_runs_model_named_as_a_file(trained_run, runner, tmp_path):
    """Stopped after its last epoch, before run.json said "finished": the folder is refused, the file used with a
    warning that says how to finish the run."""
    run_dir = copy_run(trained_run["run_dir"], tmp_path / "cut short")
    record = json.loads((run_dir / "run.json").read_text())
    del record["finished"]
    (run_dir / "run.json").write_text(json.dumps(record))
    photo = next((trained_run["data"] / "Test" / "plum").iterdir())
    refused = runner.invoke(main, ["predict", str(photo), "--model", str(run_dir)])
    assert one_line_error(refused) and "is an unfinished run" in refused.output
    used = runner.invoke(main, ["predict", str(photo), "--model", str(run_dir / "model.keras")])
    assert used.exit_code == 0, used.output
    assert used.stderr.startswith(f"warning: {run_dir} is an unfinished run (stopped after its last epoch")
    assert f"{photo}: " in used.stdout


def test_read_only_report_folder_is_refused_before_the_evaluation(trained_run, runner, tmp_path, monkeypatch):
    import os

    from fruitkeras.evaluation_report import check_writable

    read_only = tmp_path / "locked"
    read_only.mkdir()
    real_access = os.access  # no writing there, as for a user other than root (root may write anywhere)
    monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode) and not (
        str(path) == str(read_only) and mode & os.W_OK))
    with pytest.raises(Exception, match="cannot write the reports into .*locked.*choose a folder with --out"):
        check_writable(read_only / "reports")
    result = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--data", str(trained_run["data"]),
                                  "--out", str(read_only)])
    assert one_line_error(result) and "--out" in result.output
    assert "test accuracy" not in result.output  # nothing was printed before the error


def test_compare_lists_only_metrics_every_run_has(trained_run, image_folders, runner, tmp_path):
    without = train_architecture(TINY_ARCHITECTURE, data=str(image_folders), run_dir=tmp_path / "no-test", epochs=1, verbose=0,
                                 test_evaluation=False)
    result = runner.invoke(main, ["compare", str(trained_run["run_dir"]), str(without), "--out", str(tmp_path / "c")])
    assert one_line_error(result)
    available = result.output.split("available: ", 1)[1].strip().split(", ")
    assert "test_accuracy" not in available and "val_accuracy" in available


def test_class_mismatch_names_only_the_differences(trained_run, runner, tmp_path):
    other = make_image_folders(tmp_path / "other", train_per_class=2, test_per_class=2,
                               classes={f"fruit {i}": (10 * i, 50, 90) for i in range(9)})
    result = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--data", str(other)])
    assert one_line_error(result)
    assert "has 9 class(es) unknown to the model: fruit 0, fruit 1, fruit 2, fruit 3, fruit 4 and 4 more" in result.output
    assert "lacks 3 of its 3 class(es): cherry, kiwi, plum" in result.output


def test_short_runs_get_whole_epoch_ticks():
    from fruitkeras.figures import learning_curves_figure

    history = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.5, 0.8]})
    figure = learning_curves_figure(history, "short")
    figure.canvas.draw()  # ticks are placed at drawing time
    for axis in figure.axes:
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks


def test_new_runs_are_git_ignored_but_the_shipped_one_is_not():
    def ignored(path):
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    assert ignored("runs/my-experiment/model.keras") and ignored("runs/smoke/history.csv")
    assert not ignored("runs/fruits77-vgg_small/model.keras")
    assert not ignored("runs/fruits77-vgg_small/history.csv")
