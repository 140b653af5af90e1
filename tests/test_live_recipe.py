"""architectures/live.json, the recipe trained in front of the examiner: valid, and it trains into a run folder."""

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from conftest import REPO
from fruitkeras.architecture import build_model, load_architecture
from fruitkeras.cli import main
from fruitkeras.explain.registry import NAMES
from fruitkeras.layers import BatchNorm
from fruitkeras.training import train

LIVE = REPO / "architectures" / "live.json"


def test_the_live_recipe_is_convolutions_dense_layers_and_our_batchnorm():
    architecture = load_architecture(LIVE)
    kinds = [kind for kind, _ in architecture.layers]
    assert {"conv", "dense", "batchnorm"} <= set(kinds)
    model = build_model(architecture, 77)
    assert any(isinstance(layer, BatchNorm) for layer in model.layers)
    assert model.output_shape == (None, 77)


def test_the_live_recipe_trains_a_tiny_run_with_the_full_log(image_folders, tmp_path):
    run = train(LIVE, data=str(image_folders), run_dir=tmp_path / "live", epochs=2, verbose=0)
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    for column in ("timestamp", "epoch_seconds", "val_accuracy", "test_accuracy"):
        assert history[column].notna().all(), column
    for name in ("model.keras", "familiarity.npz", "architecture.json", "learning_curves.png"):
        assert (run / name).is_file(), name
    # The file asks for mixed precision; no GPU here, so bfloat16.
    assert json.loads((run / "run.json").read_text())["distribute"]["mixed_precision"] == "mixed_bfloat16"

    # bfloat16 compute keeps the promise: the same seed, the same history bit for bit.
    again = train(LIVE, data=str(image_folders), run_dir=tmp_path / "again", epochs=2, verbose=0)
    clock = ["timestamp", "epoch_seconds"]
    pd.testing.assert_frame_equal(history.drop(columns=clock), pd.read_csv(again / "history.csv").drop(columns=clock),
                                  check_exact=True)

    # The examiner picks an image: every method explains it with the bfloat16 model (the last layer is float32).
    image = sorted((image_folders / "Test").rglob("*.jpg"))[0]
    out = tmp_path / "explained"
    result = CliRunner().invoke(main, ["explain", str(image), "--model", str(run), "--method", "all", "--patch", "5",
                                       "--samples", "2", "--whole-photo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for method in NAMES:
        heatmap = np.load(next(out.glob(f"{image.stem}_{method}-*.npy")))
        assert np.isfinite(heatmap).all() and np.ptp(heatmap) > 0, method
