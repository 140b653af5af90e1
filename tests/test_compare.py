"""fruitkeras compare: tables, differences and plots from real (tiny) runs."""

import json

import pandas as pd
import pytest

from conftest import TINY_ARCHITECTURE
from fruitkeras.cli import main
from fruitkeras.comparison import differences
from fruitkeras.training import train


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, trained_run):
    """The tiny architecture with another learning rate, trained on the same data."""
    base = tmp_path_factory.mktemp("second")
    source = json.loads(TINY_ARCHITECTURE.read_text())
    source["training"]["learning_rate"] = 0.05
    architecture = base / "tiny_fast.json"
    architecture.write_text(json.dumps(source))
    return train(architecture, data=str(trained_run["data"]), run_dir=base / "fast", epochs=2, verbose=0)


def test_table_matches_the_histories_and_names_what_differs(trained_run, second_run, runner, tmp_path):
    result = runner.invoke(main, ["compare", str(trained_run["run_dir"]), str(second_run), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "comparison.csv")
    for row, folder in zip(table.itertuples(index=False), (trained_run["run_dir"], second_run)):
        history = pd.read_csv(folder / "history.csv")
        assert row.run == folder.name
        assert row[1] == pytest.approx(history["test_accuracy"].iloc[-1], abs=1e-4)
        assert row[2] == pytest.approx(history["test_accuracy"].max(), abs=1e-4)
        assert row[3] == history["epoch"].iloc[int(history["test_accuracy"].idxmax())]
        assert row.epochs == len(history)
        assert row.parameters == json.loads((folder / "run.json").read_text())["parameters"]
    assert table["differs"].tolist() == ["-", "training.learning_rate=0.05"]
    markdown = (tmp_path / "comparison.md").read_text()
    assert markdown.startswith("| run | final test_accuracy |") and "training.learning_rate=0.05" in markdown
    assert (tmp_path / "comparison.png").stat().st_size > 10_000


def test_differences_are_against_the_most_common_value():
    base = {"name": "a", "training": {"learning_rate": 0.01, "optimizer": "adam"}, "layers": [{"filters": 8}]}
    other_rate = json.loads(json.dumps(base)) | {"name": "b"}
    other_rate["training"]["learning_rate"] = 0.1
    wider = json.loads(json.dumps(base))
    wider["layers"][0]["filters"] = 16
    assert differences([base, other_rate, wider]) == ["", "training.learning_rate=0.1", "layers.1.filters=16"]


def test_loss_metric_takes_the_lowest_as_best(trained_run, second_run, runner, tmp_path):
    result = runner.invoke(main, ["compare", str(trained_run["run_dir"]), str(second_run), "--metric", "val_loss",
                                  "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "comparison.csv")
    history = pd.read_csv(second_run / "history.csv")
    assert table["best val_loss"].iloc[1] == pytest.approx(history["val_loss"].min(), abs=1e-4)


@pytest.mark.parametrize("make_args, message", [
    (lambda run, tmp: ["compare", str(run), "--metric", "f1"], "metric 'f1' not in the history of"),
    (lambda run, tmp: ["compare", str(run), str(tmp)], "not a run folder (history.csv missing)"),
])
def test_bad_input_is_one_line(trained_run, runner, tmp_path, make_args, message):
    result = runner.invoke(main, make_args(trained_run["run_dir"], tmp_path) + ["--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert message in result.output


def test_a_removed_layer_reads_as_removed_and_later_layers_keep_their_counterparts():
    conv = {"type": "conv", "filters": 8}
    base = {"layers": [conv, {"type": "batchnorm"}, {"type": "activation"}, {"type": "dropout", "rate": 0.3}]}
    without_norm = {"layers": [conv | {"use_bias": True}, {"type": "activation"}, {"type": "dropout", "rate": 0.0}]}
    assert differences([base, without_norm]) == [
        "",
        "layers: -1 batchnorm; layers.1.use_bias=true; layers.3.rate=0.0",
    ]
