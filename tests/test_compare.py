"""fruitkeras compare: tables, differences and plots from real (tiny) runs."""

import json

import pandas as pd
import pytest

from PIL import Image

from conftest import TINY_ARCHITECTURE, copy_run
from fruitkeras.cli import main
from fruitkeras.comparison import comparison_figure, comparison_table, differences, read_run
from fruitkeras.training import train_architecture


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, trained_run):
    """The tiny architecture with another learning rate, trained on the same data."""
    base = tmp_path_factory.mktemp("second")
    source = json.loads(TINY_ARCHITECTURE.read_text())
    source["training"]["learning_rate"] = 0.05
    architecture = base / "tiny_fast.json"
    architecture.write_text(json.dumps(source))
    return train_architecture(architecture, data=str(trained_run["data"]), run_dir=base / "fast", epochs=2, verbose=0)


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
    # The second run was trained with --epochs 2 (the file says 2 as well; the first run had --epochs 3).
    assert table["differs"].tolist() == ["-", "run.epochs=2; training.learning_rate=0.05"]
    markdown = (tmp_path / "comparison.md").read_text()
    assert markdown.startswith("| run | final test_accuracy |") and "training.learning_rate=0.05" in markdown
    with Image.open(tmp_path / "comparison.png") as picture:
        assert picture.size == (1300, 800)  # two rows (accuracy and loss) of two panels, at 100 dpi


def test_every_run_is_drawn_within_the_axes(trained_run, second_run, tmp_path):
    """A run whose values all lie below the others' is still in view (once, it fell under the y-limit)."""
    low = copy_run(trained_run["run_dir"], tmp_path / "low")
    history = pd.read_csv(low / "history.csv")
    history["test_accuracy"] = [0.21, 0.25, 0.3]
    history.to_csv(low / "history.csv", index=False)
    runs = [read_run(folder) for folder in (trained_run["run_dir"], second_run, low)]
    figure = comparison_figure(runs, "test_accuracy")
    accuracy_axes = [axis for axis in figure.axes if axis.get_ylabel() == "test_accuracy"]
    assert len(accuracy_axes) == 2
    for axis in accuracy_axes:
        lines = axis.get_lines()
        assert len(lines) == 3
        bottom, top = axis.get_ylim()
        for line in lines:
            assert bottom <= min(line.get_ydata()) and max(line.get_ydata()) <= top


def test_differs_names_data_classes_epochs_and_sample_limit(trained_run, tmp_path):
    from conftest import CLASS_COLOURS, make_image_folders

    two_classes = make_image_folders(tmp_path / "two", classes=dict(list(CLASS_COLOURS.items())[:2]))
    other = train_architecture(TINY_ARCHITECTURE, data=str(two_classes), run_dir=tmp_path / "other", epochs=1, limit_per_class=5,
                               verbose=0)
    table = comparison_table([read_run(trained_run["run_dir"]), read_run(other)], "test_accuracy")
    assert table["differs"].iloc[0] == "-"
    assert table["differs"].iloc[1] == (f"run.classes=2; run.data={json.dumps(str(two_classes))}; run.epochs=1; "
                                        "run.limit_per_class=5")


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
