"""The optional studies in one resumable command: every run, then a comparison per study.

Studies (one architecture file a run, under --plan-dir; each differs from the
baseline only in what it studies):

* ``seeds``: the baseline (``architectures/vgg_small.json``) with seeds 0, 1, 2: the noise;
* ``bn_dropout``, ``augmentation``, ``optimizers``: the baseline (seed 0) and
  every file in ``architectures/experiments/<study>/``.

A run that has finished is skipped; an interrupted one continues (``--resume``);
before each run the time left is estimated from the runs finished so far.
Runs go to --runs-dir (not committed), each with its console output in
``<run>.log`` beside it; each study's ``fruitkeras compare`` output (plot and
tables) goes to ``--out/<study>/``, and each run's history.csv, run.json and
learning curves to ``--out/runs/<run>/``.  ``--epochs`` shortens every run, the
baseline's too, so that all stay comparable.

Usage:
    python benchmarks/run_studies.py --data ../shared/data/fruits-360-77class --epochs 6 > studies.log 2>&1 &
"""

import argparse
import contextlib
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

STUDIES = ("bn_dropout", "augmentation", "optimizers")
SEEDS = (0, 1, 2)
SUMMARY_FILES = ("history.csv", "run.json", "learning_curves.png")
SECONDS_PER_EPOCH_GUESS = 45  # vgg_small on the 77-class set, 2 cores, before any run has finished


def plan(baseline, plan_dir, studies):
    """{study: [(architecture file, seed, run name)]}; the baseline's seed-0 run is shared by every study."""
    base = (baseline, 0, f"{baseline.stem}-seed0")
    runs = {"seeds": [(baseline, seed, f"{baseline.stem}-seed{seed}") for seed in SEEDS]}
    for study in studies:
        files = sorted((plan_dir / study).glob("*.json"))
        runs[study] = [base] + [(path, 0, f"{path.stem}-seed0") for path in files]
    return runs


def run_minutes(run_dir):
    """Wall-clock minutes of a finished run, from its run.json."""
    record = json.loads((run_dir / "run.json").read_text())
    started, finished = (datetime.fromisoformat(record[key]) for key in ("started", "finished"))
    return (finished - started).total_seconds() / 60


def train_into(log, architecture, run_dir, resume, data, seed, epochs):
    """One run, trained in this process (TensorFlow imported once for all runs), its epoch lines into ``log``;
    returns None, or what stopped it (the run stays resumable)."""
    import keras

    from fruitkeras.errors import FruitkerasError
    from fruitkeras.training import train_architecture

    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            if resume:
                train_architecture(architecture, run_dir=run_dir, resume=True, epochs=epochs)
            else:
                train_architecture(architecture, data=data, run_dir=run_dir, seed=seed, epochs=epochs)
        except FruitkerasError as error:  # an interrupted run's message says how it continues
            print(f"error: {error}", flush=True)
            return str(error)
        finally:
            keras.backend.clear_session()  # each run's graphs and models released before the next
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, help="epochs for every run (default: the files' own)")
    parser.add_argument("--study", action="append", choices=STUDIES, help="only these studies (repeatable)")
    parser.add_argument("--baseline", type=Path, default=Path("architectures/vgg_small.json"))
    parser.add_argument("--plan-dir", type=Path, default=Path("architectures/experiments"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/experiments/studies"))
    parser.add_argument("--out", type=Path, default=Path("docs/studies"))
    args = parser.parse_args()

    studies = plan(args.baseline, args.plan_dir, args.study or STUDIES)
    unique = list(dict.fromkeys(run for runs in studies.values() for run in runs))
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    epochs_each = args.epochs or 15
    for number, (architecture, seed, name) in enumerate(unique, start=1):
        run_dir = args.runs_dir / name
        if (run_dir / "model.keras").exists():
            print(f"[{number}/{len(unique)}] {name}: finished, skipped", flush=True)
            continue
        finished = [args.runs_dir / n for _, _, n in unique if (args.runs_dir / n / "model.keras").exists()]
        per_run = (sum(run_minutes(d) for d in finished) / len(finished) if finished
                   else epochs_each * SECONDS_PER_EPOCH_GUESS / 60)
        left = per_run * sum(1 for _, _, n in unique if not (args.runs_dir / n / "model.keras").exists())
        resume = (run_dir / "run.json").exists()
        print(f"[{number}/{len(unique)}] {name} ({architecture}, seed {seed}){' resumed' if resume else ''}; "
              f"about {left:.0f} min left for the remaining runs", flush=True)
        started = time.perf_counter()
        with open(args.runs_dir / f"{name}.log", "a") as log:
            problem = train_into(log, architecture, run_dir, resume, args.data, seed, args.epochs)
        if problem:
            print(f"{name}: stopped: {problem} (see {args.runs_dir / name}.log); run this command again to "
                  "continue", flush=True)
            sys.exit(1)
        print(f"  done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    from fruitkeras.comparison import compare_runs

    for _, _, name in unique:  # the small summaries that are committed; the models stay in --runs-dir
        kept = args.out / "runs" / name
        kept.mkdir(parents=True, exist_ok=True)
        for summary in SUMMARY_FILES:
            if (args.runs_dir / name / summary).exists():
                shutil.copyfile(args.runs_dir / name / summary, kept / summary)
    for study, runs in studies.items():
        table = compare_runs([args.runs_dir / name for _, _, name in runs], "test_accuracy", args.out / study)
        print(f"\n{study}: wrote {args.out / study}/comparison.*")
        print(table.drop(columns=["differs"]).to_string(index=False))


if __name__ == "__main__":
    main()
