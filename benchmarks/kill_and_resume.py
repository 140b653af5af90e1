"""Kill -9 at every write of a run and at random moments, and a run folder on a really full disk: does each
folder resume to the history of an uninterrupted run?

The longer version of ``tests/test_faults.py``.  Three parts, each trial a real
``fruitkeras train`` in a subprocess (``architectures/tiny.json``, 3 epochs, seed 5, on a tiny image
folder drawn here):

1. **every write**: for each write of a run (each atomic rename, in order), a fresh run killed with SIGKILL
   just before it and one killed just after it, each then resumed to the end;
2. **random moments**: a fresh run killed after a random delay drawn over the run's whole length, then resumed;
3. **a full disk** (root only: it mounts a tmpfs): the run folder on a tmpfs of each ``--disk-kb`` size (a
   finished tiny run takes about 110 KB, so each size fills at another write); the
   command must end with exit 0, or exit 1 and one line on stderr; then the tmpfs is grown and ``--resume``
   (or the same command, when nothing was kept) must finish the run.

A trial passes when the finished history equals the uninterrupted run's (every column but the clock's, as
text): each epoch's row once, the same numbers.  Prints one line per trial and the counts.

Usage:
  python benchmarks/kill_and_resume.py [--parts writes random disk] [--random 20] [--disk-kb 8 16 32 48 64 96 112 128 160] [--work DIR]
"""

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import EPOCHS, SEED, TINY_ARCHITECTURE, history_without_clock, make_image_folders  # noqa: E402
from test_faults import KILLER  # noqa: E402  the suite's killer, given a name of "*" for any file

ANY = "*"


def command(data, run_dir, resume=False):
    if resume:
        return ["train", str(TINY_ARCHITECTURE), "--run-dir", str(run_dir), "--resume", "--quiet"]
    return ["train", str(TINY_ARCHITECTURE), "--data", str(data), "--run-dir", str(run_dir), "--epochs", str(EPOCHS),
            "--seed", str(SEED), "--quiet"]


def cli(arguments, timeout=300):
    return subprocess.run([sys.executable, "-m", "fruitkeras.cli", *arguments], capture_output=True, text=True,
                          timeout=timeout)


def killed_at_write(data, run_dir, index, when):
    """A fresh run killed before or after its ``index``-th write; whether the kill came."""
    killer = KILLER.replace("os.path.basename(destination) == name", "name in ('*', os.path.basename(destination))")
    done = subprocess.run([sys.executable, "-c", killer, ANY, str(index), when, *command(data, run_dir)],
                          capture_output=True, text=True, timeout=300)
    return done.returncode == -signal.SIGKILL


def killed_after(data, run_dir, seconds):
    process = subprocess.Popen([sys.executable, "-m", "fruitkeras.cli", *command(data, run_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=seconds)
        return False  # finished before the kill
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def finish(data, run_dir):
    """Resume what a kill left (or start again where it left nothing); the history, or the error line."""
    if (run_dir / "model.keras").exists() and json.loads((run_dir / "run.json").read_text()).get("finished"):
        return history_without_clock(run_dir), ""  # killed after the run was whole: nothing to resume
    resumable = (run_dir / "run.json").exists()
    done = cli(command(data, run_dir, resume=resumable))
    if done.returncode != 0:
        return None, done.stderr.strip()
    return history_without_clock(run_dir), ""


def writes_of_a_run(data, work):
    """How many atomic renames an uninterrupted run makes (counted with the killer set past the end)."""
    counter = KILLER.replace("rename(source, destination, *args, **kwargs)",
                             "rename(source, destination, *args, **kwargs); print('write', destination)")
    counter = counter.replace("os.path.basename(destination) == name", "True")
    done = subprocess.run([sys.executable, "-c", counter, ANY, "1000000", "never", *command(data, work / "count")],
                          capture_output=True, text=True, timeout=300)
    return [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("write ")]


def full_disk(data, work, size_kb, expected):
    mount = work / f"disk{size_kb}"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)]).returncode:
        return "skipped: cannot mount a tmpfs (root only)"
    try:
        run_dir = mount / "run"
        first = cli(command(data, run_dir))
        outcome = f"exit {first.returncode}"
        if first.returncode not in (0, 1) or (first.returncode == 1 and first.stderr.count("\n") != 1):
            return f"FAIL: {outcome}; stderr: {first.stderr.strip()[:300]!r}"
        if first.returncode == 1:
            outcome += f" with one line ({first.stderr.strip()[:110]}...)"
            subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
            history, error = finish(data, run_dir)
        else:
            history, error = history_without_clock(run_dir), ""
        return ("pass: " if history == expected else f"FAIL ({error}): ") + outcome
    finally:
        subprocess.run(["umount", str(mount)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="*", choices=["writes", "random", "disk"], default=["writes", "random", "disk"])
    parser.add_argument("--random", type=int, default=20, help="random-moment trials")
    parser.add_argument("--disk-kb", type=int, nargs="*", default=[8, 16, 32, 48, 64, 96, 112, 128, 160])
    parser.add_argument("--work", type=Path, help="keep the trials' folders here (default: a temporary folder)")
    options = parser.parse_args()
    work = options.work or Path(tempfile.mkdtemp(prefix="fruitkeras-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    data = make_image_folders(work / "fruits", train_per_class=20, test_per_class=4)
    started = time.perf_counter()
    reference = cli(command(data, work / "uninterrupted"))
    assert reference.returncode == 0, reference.stderr
    run_seconds = time.perf_counter() - started
    expected = history_without_clock(work / "uninterrupted")
    writes = writes_of_a_run(data, work)
    print(f"uninterrupted run: {run_seconds:.1f} s, {len(expected[1])} epochs, {len(writes)} writes: "
          + ", ".join(Path(write).name for write in writes), flush=True)
    results = []
    for index in range(1, len(writes) + 1 if "writes" in options.parts else 1):
        for when in ("before", "after"):
            run_dir = work / f"write{index:02d}-{when}"
            came = killed_at_write(data, run_dir, index, when)
            history, error = finish(data, run_dir)
            passed = came and history == expected
            results.append(passed)
            print(f"write {index:2d} ({Path(writes[index - 1]).name}) {when:6s}: "
                  f"{'pass' if passed else 'FAIL ' + (error or ('no kill' if not came else 'another history'))}",
                  flush=True)
    draw = random.Random(0)
    for trial in range(options.random if "random" in options.parts else 0):
        seconds = draw.uniform(0.5, run_seconds)
        run_dir = work / f"random{trial:02d}"
        came = killed_after(data, run_dir, seconds)
        history, error = finish(data, run_dir)
        passed = history == expected
        results.append(passed)
        print(f"random {trial:2d}, killed after {seconds:4.1f} s{'' if came else ' (had finished)'}: "
              f"{'pass' if passed else 'FAIL ' + (error or 'another history')}", flush=True)
    print(f"kills: {sum(results)} of {len(results)} resumed to the uninterrupted history", flush=True)
    for size in options.disk_kb if "disk" in options.parts else ():
        print(f"full disk, {size} KB tmpfs: {full_disk(data, work, size, expected)}", flush=True)
    if not options.work:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"kills": len(results), "identical": sum(results)}))


if __name__ == "__main__":
    main()
