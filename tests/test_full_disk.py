"""A disk that fills under a training, at any write: one line and exit 1, never a signal or a trace, and once
there is space ``--resume`` (or the same command, where nothing was kept) finishes the run to the history of an
uninterrupted one.  And the limits that read the same way.
"""

import errno
import os

import pytest

from conftest import EPOCHS, SEED, TINY_ARCHITECTURE, history_without_clock, temporaries
from fruitkeras.cli import main


def _fsync_failing_at(call):
    """os.fsync that raises ENOSPC at its ``call``-th use, as a full disk does."""
    real, seen = os.fsync, [0]

    def fsync(descriptor):
        seen[0] += 1
        if seen[0] == call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(descriptor)

    return fsync


# A run's writes, in order: the architecture copy, run.json, a row and a backup per epoch, run.json, the model, the
# verdict's statistics, the curves, run.json "finished".  The disk fills at each kind's first (and the last);
# benchmarks/kill_and_resume.py fills a real tmpfs.
WRITES = 2 + 2 * EPOCHS + 5
FIRST_OF_EACH_KIND = [1, 2, 3, 4, WRITES - 3, WRITES - 2, WRITES - 1, WRITES]


@pytest.mark.parametrize("failing_write", FIRST_OF_EACH_KIND)
def test_a_full_disk_at_any_write_is_one_line_and_the_run_finishes_later(fault_data, runner, tmp_path, monkeypatch,
                                                                       failing_write):
    data, expected = fault_data
    run_dir = tmp_path / "run"
    command = ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir", str(run_dir),
               "--epochs", str(EPOCHS), "--seed", str(SEED), "--quiet"]
    monkeypatch.setattr(os, "fsync", _fsync_failing_at(failing_write))
    failed = runner.invoke(main, command)
    monkeypatch.undo()
    assert failed.exit_code == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the disk is full writing "), failed.stderr
    assert not run_dir.exists() or temporaries(run_dir) == []
    if (run_dir / "run.json").exists():
        assert lines[0].endswith(f"--run-dir {run_dir} --resume")
        again = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", "--quiet"])
    else:
        assert lines[0].endswith("nothing was kept; free some space, then run the command again")
        assert not run_dir.exists()
        again = runner.invoke(main, command)
    assert again.exit_code == 0, again.output
    assert history_without_clock(run_dir) == expected


def test_a_batch_larger_than_the_training_set_is_refused(fault_data, runner, tmp_path):
    data, _ = fault_data
    result = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir",
                                  str(tmp_path / "run"), "--set", "training.batch_size=1000000000000"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "training.batch_size 1000000000000 is larger than the training set (48 images" in result.stderr
    assert not (tmp_path / "run").exists()
