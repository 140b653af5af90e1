"""The study runner: every run once, finished ones skipped, interrupted ones resumed, comparisons written."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, TINY_ARCHITECTURE, make_image_folders
from fruitkeras.errors import TrainingInterrupted
from fruitkeras.training import train_architecture
from test_new_user import SignalAt


def test_runner_runs_each_plan_entry_once_resumes_and_compares(tmp_path):
    data = make_image_folders(tmp_path / "fruits", train_per_class=8, test_per_class=3)
    plan_dir = tmp_path / "plan"
    (plan_dir / "augmentation").mkdir(parents=True)
    variant = json.loads(TINY_ARCHITECTURE.read_text())
    variant["training"]["learning_rate"] = 0.05
    (plan_dir / "augmentation" / "fast.json").write_text(json.dumps(variant))
    runs_dir = tmp_path / "runs"
    # An interrupted run of the plan, as a stopped session leaves it.
    with pytest.raises(TrainingInterrupted):
        train_architecture(TINY_ARCHITECTURE, data=str(data), run_dir=runs_dir / "tiny-seed1", epochs=2, seed=1, verbose=0,
                           extra_callbacks=[SignalAt("after-log-row", 0)])
    command = [sys.executable, str(REPO / "benchmarks" / "run_studies.py"), "--data", str(data), "--epochs", "2",
               "--study", "augmentation", "--baseline", str(TINY_ARCHITECTURE), "--plan-dir", str(plan_dir),
               "--runs-dir", str(runs_dir), "--out", str(tmp_path / "docs")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "tiny-seed1 (" in first.stdout and "resumed" in first.stdout and "min left" in first.stdout
    for name in ("tiny-seed0", "tiny-seed1", "tiny-seed2", "fast-seed0"):  # seed 0 shared by both studies
        assert (runs_dir / name / "model.keras").exists(), name
        assert len(pd.read_csv(runs_dir / name / "history.csv")) == 2
    assert json.loads((runs_dir / "tiny-seed2" / "run.json").read_text())["seed"] == 2
    table = pd.read_csv(tmp_path / "docs" / "augmentation" / "comparison.csv")
    assert table["run"].tolist() == ["tiny-seed0", "fast-seed0"]
    assert table["differs"].tolist() == ["-", "training.learning_rate=0.05"]
    seeds = pd.read_csv(tmp_path / "docs" / "seeds" / "comparison.csv")
    assert seeds["run"].tolist() == ["tiny-seed0", "tiny-seed1", "tiny-seed2"]
    # The committed summaries: each run's log and record, never its model.
    kept = tmp_path / "docs" / "runs"
    assert sorted(p.name for p in kept.iterdir()) == ["fast-seed0", "tiny-seed0", "tiny-seed1", "tiny-seed2"]
    assert (kept / "fast-seed0" / "history.csv").read_text() == (runs_dir / "fast-seed0" / "history.csv").read_text()
    assert (kept / "fast-seed0" / "run.json").exists() and not list(kept.rglob("*.keras"))

    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished, skipped") == 4
