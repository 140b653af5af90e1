"""Same command, same seed, same history: bit for bit on one machine, resumed or not.

``RECIPE_TINY`` uses every part of the 77-class recipe, which ``tiny.json`` leaves out.
"""

import json

import keras
import pandas as pd
import pytest

from conftest import RECIPE_TINY
from fruitkeras.errors import TrainingInterrupted
from fruitkeras.training import train_architecture

CLOCK_COLUMNS = ["timestamp", "epoch_seconds"]  # the only columns allowed to differ


class LearningRates(keras.callbacks.Callback):
    """The optimizer's learning rate after each epoch (the schedule's position)."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


class StopAfterEpoch(keras.callbacks.Callback):
    def __init__(self, last):
        super().__init__()
        self.last = last

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.last:
            raise KeyboardInterrupt


@pytest.fixture
def recipe_file(architecture_file):
    return architecture_file(RECIPE_TINY, "recipe_tiny.json")


def history_of(run_dir):
    return pd.read_csv(run_dir / "history.csv").drop(columns=CLOCK_COLUMNS)


def test_same_seed_gives_the_same_history_bit_for_bit(recipe_file, image_folders, tmp_path, monkeypatch, capfd):
    """Run a decodes into an empty cache, run b reads that cache: the same history either way."""
    monkeypatch.setenv("FRUITKERAS_CACHE", str(tmp_path / "cache"))
    runs, notes = [], []
    for name, seed in (("a", 3), ("b", 3), ("other-seed", 4)):
        runs.append(train_architecture(recipe_file, data=str(image_folders), run_dir=tmp_path / name, seed=seed, verbose=1))
        notes.append(capfd.readouterr().out.count("into the cache"))
    assert notes == [2, 0, 0]  # a decoded Training and Test into the cache; b and other-seed read them
    first, second, other = (history_of(run) for run in runs)
    assert len(first) == 4 and first["accuracy"].nunique() > 1
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert not first[["loss", "val_loss"]].equals(other[["loss", "val_loss"]])


def test_resumed_run_equals_an_uninterrupted_one(recipe_file, image_folders, tmp_path):
    """Interrupted after epoch 2 and resumed: the same batches, augmentation, schedule and weights as a run
    that went straight through, so the same history."""
    straight_rates, resumed_rates = LearningRates(), LearningRates()
    straight = train_architecture(recipe_file, data=str(image_folders), run_dir=tmp_path / "straight", seed=1, verbose=0,
                                  extra_callbacks=[straight_rates])
    with pytest.raises(TrainingInterrupted):
        train_architecture(recipe_file, data=str(image_folders), run_dir=tmp_path / "resumed", seed=1, verbose=0,
                           extra_callbacks=[resumed_rates, StopAfterEpoch(2)])
    resumed = train_architecture(recipe_file, run_dir=tmp_path / "resumed", resume=True, verbose=0,
                                 extra_callbacks=[resumed_rates])
    assert json.loads((resumed / "run.json").read_text())["resumed"][0]["after_epoch"] == 2
    assert resumed_rates.rates == straight_rates.rates  # the schedule went on where it stopped
    pd.testing.assert_frame_equal(history_of(resumed), history_of(straight), check_exact=True)


def test_adamw_trains_with_the_weight_decay_the_file_gives(architecture_file, image_folders, tmp_path, capsys):
    """0 means no decay; AdamW's own default (0.004) must not step in.  (verbose=0 prints nothing.)"""
    for decay in (0.0, 0.02):
        source = {**RECIPE_TINY, "training": {**RECIPE_TINY["training"], "weight_decay": decay, "epochs": 1}}
        run_dir = train_architecture(architecture_file(source, f"decay{decay}.json"), data=str(image_folders),
                                     run_dir=tmp_path / f"decay{decay}", verbose=0)
        model = keras.models.load_model(run_dir / "model.keras")  # compiled, optimizer included
        assert isinstance(model.optimizer, keras.optimizers.AdamW)
        assert float(model.optimizer.weight_decay) == decay
    assert capsys.readouterr().out == ""
