"""The layout of a run folder: every file name, in one place.

``train`` writes the first group, ``eval`` the reports; ``runs``,
``compare`` and the page read them.  Imports nothing heavy, so that
``fruitkeras runs`` stays instant.

    runs/<name>/
        architecture.json    byte copy of the architecture file the run was trained with
        run.json             data folder, seed, epochs, class names, times, overrides
        history.csv          one row per epoch (metrics, timestamp, seconds)
        backup/              the last two epochs' weights and optimizer state while unfinished (``fruitkeras.checkpoint``)
        .lock                while a train or --resume writes the folder (``fruitkeras.run_lock``)
        model.keras          the trained model, written once training has finished
        familiarity.npz      the verdict's statistics (``fruitkeras.familiarity``), written with the model
        learning_curves.png
        test_metrics.json, test_per_class.csv, confusion_matrix.csv/.png, test_mistakes.csv   (eval)
"""

import shlex
from pathlib import Path

RUNS_DIR = Path("runs")  # under the current folder: where train writes and where commands look by default
SHIPPED_RUN = "runs/fruits77-vgg_small"  # the trained run the repository's checkout comes with
# Reports of a run evaluated on data other than its own: never into the run folder, whose proof they would replace.
EVALUATIONS_DIR = Path("evaluations")

ARCHITECTURE_COPY = "architecture.json"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
BACKUP_DIR = "backup"
LOCK_FILE = ".lock"
MODEL_FILE = "model.keras"
FAMILIARITY_FILE = "familiarity.npz"
CURVES_FILE = "learning_curves.png"

METRICS_FILE = "test_metrics.json"
PER_CLASS_FILE = "test_per_class.csv"
CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"
MISTAKES_FILE = "test_mistakes.csv"
REPORT_FILES = (METRICS_FILE, PER_CLASS_FILE, CONFUSION_CSV, CONFUSION_PNG, MISTAKES_FILE)
BATCH_STATISTICS_SUFFIX = "-batch-statistics"  # eval --bn-train-mode's reports: never the standard files


def resume_command(architecture_path, run_dir):
    """The command that continues an unfinished run, quoted for a shell (paths may hold spaces)."""
    return shlex.join(["fruitkeras", "train", str(architecture_path), "--run-dir", str(run_dir), "--resume"])


def report_files(out_dir, bn_train_mode=False):
    """The evaluation report's files in ``out_dir``: the standard names for the standard evaluation (moving
    statistics), which ``fruitkeras runs`` and the page read; ``-batch-statistics`` ones for ``--bn-train-mode``."""
    names = REPORT_FILES
    if bn_train_mode:
        names = [f"{Path(name).stem}{BATCH_STATISTICS_SUFFIX}{Path(name).suffix}" for name in names]
    return [Path(out_dir) / name for name in names]
