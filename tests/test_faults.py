"""The machine failing under a training: SIGKILL inside every kind of write, and two writers at once.

Each kill leaves a folder that ``--resume`` continues to the history of an
uninterrupted run: every epoch's row once, the same numbers; a newest backup
that cannot be read costs an epoch, never the run.  A second writer is refused
at once; a killed one's lock blocks nothing.  (A full disk: ``test_full_disk.py``.)
"""

import json
import signal
import subprocess
import sys

import pytest

from conftest import EPOCHS, SEED, TINY_ARCHITECTURE, history_without_clock, temporaries
from fruitkeras.cli import main
from fruitkeras.errors import TrainingInterrupted
from fruitkeras.training import train_architecture
from test_new_user import SignalAt

# Run as ``python -c KILLER NAME N WHEN ARGS...``: the real command, killed with SIGKILL just before ("before")
# or just after ("after") the rename that completes the N-th write of a file named NAME.
KILLER = """
import os, signal, sys
name, occurrence, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rename, seen = os.replace, [0]
def replace(source, destination, *args, **kwargs):
    hit = os.path.basename(destination) == name
    seen[0] += hit
    if hit and seen[0] == occurrence and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    rename(source, destination, *args, **kwargs)
    if hit and seen[0] == occurrence and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from fruitkeras.cli import main
main(sys.argv[4:], prog_name="fruitkeras")
"""
# One chain of processes, each killed at the next moment and the next one resuming what it left: a moment inside
# each kind of write.  benchmarks/kill_and_resume.py tries every write and random moments.
KILL_MOMENTS = [
    ("epoch-0002.npz", 1, "before"),  # epoch 2's row is logged, its backup not yet in place
    ("history.csv", 2, "before"),  # the resumed run's first row (the first write cut the uncommitted one)
    ("run.json", 1, "before"),  # the record of the resume, before any step
    ("model.keras", 1, "before"),
    ("familiarity.npz", 1, "before"),
    ("learning_curves.png", 1, "before"),
]
def test_kill_9_inside_every_kind_of_write_resumes_to_the_uninterrupted_history(fault_data, tmp_path):
    data, expected = fault_data
    run_dir = tmp_path / "run"
    start = ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir", str(run_dir),
             "--epochs", str(EPOCHS), "--seed", str(SEED), "--quiet"]
    resume = ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", "--quiet"]
    for index, (name, occurrence, when) in enumerate(KILL_MOMENTS):
        arguments = start if index == 0 else resume
        killed = subprocess.run([sys.executable, "-c", KILLER, name, str(occurrence), when, *arguments],
                                capture_output=True, text=True, timeout=240)
        assert killed.returncode == -signal.SIGKILL, (name, occurrence, when, killed.stderr)
    finished = subprocess.run([sys.executable, "-m", "fruitkeras.cli", *resume], capture_output=True, text=True,
                              timeout=240)
    assert finished.returncode == 0, finished.stderr
    assert history_without_clock(run_dir) == expected
    record = json.loads((run_dir / "run.json").read_text())
    resumed_after = [entry["after_epoch"] for entry in record["resumed"]]
    assert record["finished"] and resumed_after == sorted(resumed_after) and resumed_after[-1] == EPOCHS
    assert not (run_dir / "backup").exists() and not (run_dir / ".lock").exists()
    assert temporaries(run_dir) == []


HOLDER = """
import sys, time
from fruitkeras import run_lock
with run_lock.held(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_one_writer_a_second_is_refused_naming_the_holder_and_a_dead_holder_blocks_nothing(fault_data, runner,
                                                                                          tmp_path):
    data, expected = fault_data
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        command = ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir", str(run_dir),
                   "--epochs", str(EPOCHS), "--seed", str(SEED), "--quiet"]
        refused = runner.invoke(main, command)
        assert refused.exit_code == 1 and refused.stderr == (
            f"error: {run_dir} is in use by process {holder.pid} (a train or --resume writing to it); wait for it "
            "to end, or train into another --run-dir\n")
        listing = runner.invoke(main, ["runs", str(tmp_path)])
        assert listing.exit_code == 0
    finally:
        holder.kill()  # SIGKILL: no clean-up, its lock file stays behind
        holder.wait()
    assert (run_dir / ".lock").read_text().strip() == str(holder.pid)
    started = runner.invoke(main, command)
    assert started.exit_code == 0, started.output
    assert history_without_clock(run_dir) == expected


def test_an_unreadable_newest_backup_falls_back_to_the_one_before_and_says_so(fault_data, runner, tmp_path):
    data, expected = fault_data
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train_architecture(TINY_ARCHITECTURE, data=str(data), run_dir=run_dir, epochs=EPOCHS, seed=SEED, verbose=0,
                           extra_callbacks=[SignalAt("after-log-row", EPOCHS - 2)])  # after epoch EPOCHS - 1
    newest = run_dir / "backup" / f"epoch-{EPOCHS - 1:04d}.npz"
    assert sorted(path.name for path in (run_dir / "backup").iterdir()) == [
        f"epoch-{EPOCHS - 2:04d}.npz", newest.name]  # the one before is kept
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a disk that lost half of it
    resumed = runner.invoke(main, ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.splitlines()[1].startswith(
        f"resuming after epoch {EPOCHS - 2} ({newest.name} cannot be read (")
    assert history_without_clock(run_dir) == expected
