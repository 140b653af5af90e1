import json
import re
from pathlib import Path

import keras
import pytest

from conftest import TINY_ARCHITECTURE as TINY
from fruitkeras.architecture import build_model, load_architecture
from fruitkeras.errors import FruitkerasError
from fruitkeras.layers import BatchNorm

ARCHITECTURES = sorted((Path(__file__).resolve().parent.parent / "architectures").glob("*.json"))

MINIMAL = {
    "input": {"height": 20, "width": 20},
    "layers": [
        {"type": "conv", "filters": 4},
        {"type": "batchnorm"},
        {"type": "activation", "activation": "relu"},
        {"type": "maxpool"},
        {"type": "flatten"},
        {"type": "dense", "units": 6},
        {"type": "dropout", "rate": 0.5},
    ],
}


def with_layer(index, **changes):
    source = json.loads(json.dumps(MINIMAL))
    source["layers"][index].update(changes)
    return source


@pytest.mark.parametrize("path", ARCHITECTURES, ids=lambda p: p.name)
def test_shipped_architectures_build(path):
    architecture = load_architecture(path)
    model = build_model(architecture, num_classes=7)
    assert model.output_shape == (None, 7)
    assert any(isinstance(layer, BatchNorm) for layer in model.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_variant_differs_from_vgg_small_only_in_numbers():
    def shape_of(value):
        if isinstance(value, dict):
            return {key: shape_of(item) for key, item in value.items() if key not in ("name", "description")}
        if isinstance(value, list):
            return [shape_of(item) for item in value]
        return type(value).__name__ if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    small = json.loads(Path(ARCHITECTURES[0].parent / "vgg_small.json").read_text())
    wide = json.loads(Path(ARCHITECTURES[0].parent / "vgg_wide.json").read_text())
    assert shape_of(small) == shape_of(wide)
    assert small["layers"] != wide["layers"]


def test_layers_follow_the_file(architecture_file):
    model = build_model(load_architecture(architecture_file(MINIMAL)), num_classes=3)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "BatchNorm", "Activation", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.layers[0].filters == 4
    assert model.input_shape == (None, 20, 20, 3)
    assert model.layers[-1].name == "predictions"


def test_editing_a_number_changes_the_model(architecture_file):
    model = build_model(load_architecture(architecture_file(with_layer(0, filters=9))), num_classes=3)
    assert model.layers[0].filters == 9


def test_training_defaults_and_overrides(architecture_file):
    source = dict(MINIMAL, training={"epochs": 3, "augmentation": {"rotation": 0.0}})
    training = load_architecture(architecture_file(source)).training
    assert training["epochs"] == 3 and training["batch_size"] == 32
    assert training["augmentation"] == {"flip": True, "rotation": 0.0, "zoom": 0.1, "brightness": 0.1,
                                        "hue": 0.0, "saturation": 0.0, "background": 0.0, "zoom_out": 0.0,
                                        "specimens": 0.0, "temperature": 0.0, "occlusion": 0.0, "blur": 0.0,
                                        "noise": 0.0, "exposure": 0.0, "stretch": 0.0, "transpose": False}
    assert load_architecture(architecture_file(MINIMAL)).training["augmentation"] is None
    # The recipe fields are optional and default to plain training.
    assert (training["schedule"], training["warmup_epochs"], training["label_smoothing"],
            training["weight_decay"], training["precise_bn_batches"]) == ("constant", 0, 0.0, 0.0, 0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("schedule", "linear", "'schedule' must be one of constant, cosine"),
        ("warmup_epochs", -1, "'warmup_epochs' must be a non-negative integer"),
        ("first_cycle_epochs", -1, "'first_cycle_epochs' must be a non-negative integer"),
        ("label_smoothing", 1.5, "'label_smoothing' must be a number in [0, 1)"),
        ("weight_decay", "lots", "'weight_decay' must be a number in [0, 1)"),
        ("precise_bn_batches", 2.5, "'precise_bn_batches' must be a non-negative integer"),
        ("type_loss", 0.5, "unknown field 'type_loss'"),  # removed: measured no gain
        ("steps_per_execution", 0, "'steps_per_execution' must be a positive integer"),
        ("learning_rate", float("nan"), "'learning_rate' must be a finite positive number, got NaN"),
        ("learning_rate", float("inf"), "'learning_rate' must be a finite positive number, got Infinity"),
        ("momentum", float("nan"), "'momentum' must be a number in [0, 1), got NaN"),
        ("jit_compile", "yes", "'jit_compile' must be true or false"),
        ("mixed_precision", 1, "'mixed_precision' must be true, false or \"auto\""),
        ("augmentation", {"hue": 2}, "'augmentation' key 'hue' must be a number in [0, 1)"),
        ("augmentation", {"transpose": 1}, "'augmentation' key 'transpose' must be true or false, got {\"transpose\": 1}"),
    ],
)
def test_recipe_fields_are_validated(architecture_file, field, value, message):
    path = architecture_file(dict(MINIMAL, training={field: value}))
    with pytest.raises(FruitkerasError, match=re.escape(f"{path}: training: {message}")):
        load_architecture(path)


def test_transpose_needs_a_square_input(architecture_file):
    path = architecture_file(dict(MINIMAL, input={"height": 40, "width": 32},
                                  training={"augmentation": {"transpose": True}}))
    with pytest.raises(FruitkerasError, match=re.escape(f"{path}: training: augmentation's 'transpose' swaps rows "
                                                        "and columns, so it needs a square input, not 40x32")):
        load_architecture(path)


@pytest.mark.parametrize("training", [{"first_cycle_epochs": 1},  # the constant schedule has no cycle
                                      {"schedule": "cosine", "warmup_epochs": 1, "first_cycle_epochs": 1}])
def test_a_first_cycle_needs_a_cosine_schedule_without_warm_up(architecture_file, training):
    path = architecture_file(dict(MINIMAL, training=training))
    with pytest.raises(FruitkerasError, match=re.escape(f"{path}: training: 'first_cycle_epochs' needs")):
        load_architecture(path)


@pytest.mark.parametrize(
    "source, message",
    [
        (with_layer(0, filters=-4), "layer 1 (conv): 'filters' must be a positive integer, got -4"),
        (with_layer(0, filters="many"), "layer 1 (conv): 'filters' must be a positive integer"),
        (with_layer(5, units=2.5), "layer 6 (dense): 'units' must be a positive integer, got 2.5"),
        (with_layer(6, rate=1.5), "layer 7 (dropout): 'rate' must be a number in [0, 1)"),
        (with_layer(2, activation="magic"), "layer 3 (activation): 'activation' must be one of"),
        (with_layer(0, filtres=3), "layer 1 (conv): unknown field 'filtres'"),
        (with_layer(3, type="pool3d"), 'layer 4: unknown type "pool3d"'),
        ({"input": {"height": 20, "width": 20}, "layers": [{"type": "dense"}]}, "layer 1 (dense): 'units' is required"),
        ({"input": {"height": 20}, "layers": MINIMAL["layers"]}, "input: 'width' is required"),
        (dict(MINIMAL, layers=[]), "'layers' must be a non-empty list"),
        (dict(MINIMAL, training={"optimizer": "adagrad"}), "training: 'optimizer' must be one of"),
        (dict(MINIMAL, trainig={}), "unknown top-level field 'trainig'"),
        ([1, 2], "the top level must be a JSON object"),
    ],
)
def test_bad_files_name_file_layer_and_field(architecture_file, source, message):
    path = architecture_file(source)
    with pytest.raises(FruitkerasError) as error:
        load_architecture(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def test_invalid_json_names_line(architecture_file):
    path = architecture_file('{"input": {"height": 20,,}}')
    with pytest.raises(FruitkerasError, match=r"invalid JSON at line 1, column 25: expecting property name"):
        load_architecture(path)


def test_unterminated_string_message_is_whole(architecture_file):
    path = architecture_file('{"name": "x",\n "layers": [{"type": "conv')
    with pytest.raises(FruitkerasError) as error:
        load_architecture(path)
    message = str(error.value)
    assert message.startswith(f"{path}: invalid JSON at line 2, column 22: unterminated string starts here")
    assert '(the line reads: "layers": [{"type": "conv)' in message


def test_missing_file(tmp_path):
    with pytest.raises(FruitkerasError, match="architecture file not found"):
        load_architecture(tmp_path / "nope.json")


def test_a_file_over_a_megabyte_is_refused_before_it_is_read(runner, tmp_path):
    from fruitkeras.cli import main

    source = json.loads(Path(TINY).read_text())
    source["description"] = "x" * 1_000_001  # valid JSON, only too big
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(source))
    result = runner.invoke(main, ["train", str(path), "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {path}: {path.stat().st_size:,} bytes is not an architecture file (at most 1,000,000: a few KB of "
        "layers and settings)"]


def test_layer_that_does_not_fit_names_its_index(architecture_file):
    source = {"input": {"height": 4, "width": 4}, "layers": [{"type": "maxpool", "pool_size": 2}, {"type": "conv", "filters": 2, "kernel_size": 5, "padding": "valid"}, {"type": "flatten"}]}
    with pytest.raises(FruitkerasError, match=r"layer 2 \(conv\) does not fit"):
        build_model(load_architecture(architecture_file(source)), 2)


def test_too_small_input_names_the_clashing_shapes_and_the_smallest_fit(architecture_file):
    source = json.loads((ARCHITECTURES[0].parent / "vgg_small.json").read_text())
    source["input"] = {"height": 20, "width": 24}
    architecture = load_architecture(architecture_file(source))
    with pytest.raises(FruitkerasError) as error:
        build_model(architecture, 3)
    message = str(error.value)
    assert "layer 16 (maxpool) does not fit" in message and "2x2 window" in message and "1x1 map" in message
    assert "input 20x24 -> 10x12 -> 5x6" in message
    assert "the smallest input these layers take is 31x31" in message
    # ... and that size does build, one pixel less does not.
    source["input"] = {"height": 31, "width": 31}
    build_model(load_architecture(architecture_file(source, "fits.json")), 3)
    source["input"] = {"height": 30, "width": 31}
    with pytest.raises(FruitkerasError, match="smallest input these layers take is 31x31"):
        build_model(load_architecture(architecture_file(source, "short.json")), 3)


def test_unflattened_end_is_explained(architecture_file):
    source = {"input": {"height": 8, "width": 8}, "layers": [{"type": "conv", "filters": 2}]}
    with pytest.raises(FruitkerasError, match="add a 'flatten' or 'global_avg_pool'"):
        build_model(load_architecture(architecture_file(source)), 2)


def test_set_overrides_any_field_validated_like_the_file(image_folders, runner, tmp_path):
    """timm's habit: the file is the configuration, --set changes a field of it for one run."""
    import json

    import pandas as pd

    from fruitkeras.cli import main
    from fruitkeras.comparison import comparison_table, read_run

    run_dir = tmp_path / "set"
    result = runner.invoke(main, ["train", str(TINY), "--data", str(image_folders), "--run-dir", str(run_dir),
                                  "--set", "training.learning_rate=0.05", "--set", "layers.1.filters=6",
                                  "--set", "training.optimizer=sgd", "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["overrides"] == ["training.learning_rate=0.05", "layers.1.filters=6", "training.optimizer=sgd"]
    assert (run_dir / "architecture.json").read_text() == TINY.read_text()  # the file itself, untouched
    import keras

    model = keras.models.load_model(run_dir / "model.keras")
    assert model.layers[0].filters == 6
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    plain = tmp_path / "plain"
    runner.invoke(main, ["train", str(TINY), "--data", str(image_folders), "--run-dir", str(plain), "--epochs", "1",
                         "--quiet"])
    differs = comparison_table([read_run(plain), read_run(run_dir)], "val_accuracy")["differs"].iloc[1]
    assert "layers.1.filters=6" in differs and "training.learning_rate=0.05" in differs
    assert len(pd.read_csv(run_dir / "history.csv")) == 1


@pytest.mark.parametrize("setting, message", [
    ("training.learning_rate=-1", "(with --set training.learning_rate=-1): training: 'learning_rate' must be a finite "
                                  "positive number, got -1"),
    ("layers.9.filters=3", "--set layers.9.filters=3: layers has layers 1 to 6"),
    ("training.momentum", "--set training.momentum: expected FIELD=VALUE"),
    ("layers.1.colour=red", "layer 1 (conv): unknown field 'colour'"),
    ("training.learning_rate=1e999", "training: 'learning_rate' must be a finite positive number, got Infinity"),
    ("training.learning_rate=NaN", "training: 'learning_rate' must be a finite positive number, got NaN"),
])
def test_bad_set_is_one_line_naming_the_field(image_folders, runner, tmp_path, setting, message):
    from fruitkeras.cli import main

    result = runner.invoke(main, ["train", str(TINY), "--data", str(image_folders), "--run-dir", str(tmp_path / "r"),
                                  "--set", setting])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert message in result.output
    assert not (tmp_path / "r").exists()


def test_resume_reapplies_the_runs_own_set_and_refuses_another(image_folders, runner, tmp_path):
    from fruitkeras.cli import main
    from fruitkeras.errors import TrainingInterrupted
    from fruitkeras.training import train_architecture

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train_architecture(TINY, data=str(image_folders), run_dir=run_dir, epochs=2, verbose=0, overrides=["layers.1.filters=5"],
                           extra_callbacks=[StopAfterFirstEpoch()])
    refused = runner.invoke(main, ["train", str(TINY), "--run-dir", str(run_dir), "--resume", "--set",
                                   "layers.1.filters=7"])
    assert refused.exit_code == 1 and "--set" in refused.output and "drop --set" in refused.output
    resumed = runner.invoke(main, ["train", str(TINY), "--run-dir", str(run_dir), "--resume", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert keras.models.load_model(run_dir / "model.keras").layers[0].filters == 5
