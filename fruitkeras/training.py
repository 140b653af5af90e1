"""Training a model from an architecture file into a run folder.

A run folder holds::

    architecture.json   copy of the architecture file the run was trained with
    run.json            data folder, seed, epochs, class names, times
    history.csv         one row per epoch (CSVLogger + EpochTimestamp)
    backup/             BackupAndRestore state while unfinished (for --resume)
    model.keras         the trained model, written once training has finished
    learning_curves.png
"""

import json
import shutil
from datetime import datetime
from pathlib import Path

from fruitkeras import data as datalib
from fruitkeras.architecture import build_model, load_architecture, parse_architecture
from fruitkeras.errors import FruitkerasError, TrainingInterrupted
from fruitkeras.runs import MODEL_FILE, RUNS_DIR, save_model

ARCHITECTURE_COPY = "architecture.json"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "learning_curves.png"
BACKUP_DIR = "backup"


def _now():
    return datetime.now().astimezone().isoformat(timespec="seconds")


def default_run_dir(architecture):
    return RUNS_DIR / f"{architecture.name}-{datetime.now():%Y%m%d-%H%M%S}"


def check_run_dir(run_dir, resume):
    """Refuse to overwrite a finished run or to restart an unfinished one silently."""
    run_dir = Path(run_dir)
    if (run_dir / MODEL_FILE).exists():
        raise FruitkerasError(f"{run_dir} already holds a finished run ({MODEL_FILE}); choose another --run-dir")
    if resume:
        if not (run_dir / RUN_FILE).exists():
            raise FruitkerasError(f"{run_dir}: no unfinished run to resume (no {RUN_FILE})")
    elif (run_dir / RUN_FILE).exists():
        raise FruitkerasError(f"{run_dir} holds an unfinished run; continue it with --resume or choose another --run-dir")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise FruitkerasError(f"{run_dir} exists and is not empty; choose another --run-dir")


def _optimizer(settings):
    import keras

    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[settings["optimizer"]](learning_rate=settings["learning_rate"])


def train(
    architecture_path,
    data=None,
    run_dir=None,
    epochs=None,
    seed=0,
    limit_per_class=None,
    resume=False,
    verbose=1,
    extra_callbacks=(),
):
    """Train and save a model; returns the run folder.

    On --resume the run's own architecture copy, seed, sample limit and
    data folder are used, so the validation split and class order match.
    """
    architecture = load_architecture(architecture_path)
    run_dir = Path(run_dir) if run_dir else default_run_dir(architecture)
    check_run_dir(run_dir, resume)
    record = {}
    if resume:
        record = json.loads((run_dir / RUN_FILE).read_text())
        saved = json.loads((run_dir / ARCHITECTURE_COPY).read_text())
        if saved != architecture.source:
            raise FruitkerasError(
                f"{architecture.path} differs from the run's copy {run_dir / ARCHITECTURE_COPY}; "
                "resume with that copy or start a new run"
            )
        architecture = parse_architecture(saved, run_dir / ARCHITECTURE_COPY)
        seed, limit_per_class = record["seed"], record["limit_per_class"]
        epochs = epochs or record["epochs"]
        data = data or record["data"]
    epochs = epochs or architecture.training["epochs"]
    settings = architecture.training

    data_root = datalib.resolve_data_dir(data)
    split = datalib.scan_split(data_root / datalib.TRAIN_SPLIT, limit_per_class, seed)
    datalib.report_skipped(split)
    test_dir = data_root / datalib.TEST_SPLIT
    if test_dir.is_dir():
        datalib.check_same_classes(split.class_names, datalib.class_folders(test_dir), "Training/", "Test/")
    if resume:
        datalib.check_same_classes(record["class_names"], split.class_names, "the run", f"{data_root}/Training/")
    train_split, val_split = datalib.split_validation(split, settings["validation_split"], seed)

    import keras

    keras.utils.set_random_seed(seed)
    size = architecture.input_size
    train_data = datalib.make_dataset(
        train_split, size, settings["batch_size"], shuffle=True, seed=seed,
        augmenter=datalib.make_augmenter(settings["augmentation"], seed),
    )
    val_data = datalib.make_dataset(val_split, size, settings["batch_size"]) if val_split else None

    model = build_model(architecture, len(split.class_names))
    model.compile(optimizer=_optimizer(settings), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        shutil.copyfile(architecture.path, run_dir / ARCHITECTURE_COPY)
        record = {
            "architecture": architecture.name,
            "architecture_file": str(architecture.path),
            "data": str(data_root),
            "seed": seed,
            "limit_per_class": limit_per_class,
            "epochs": epochs,
            "class_names": split.class_names,
            "train_images": len(train_split),
            "validation_images": len(val_split) if val_split else 0,
            "started": _now(),
        }
    record["epochs"] = epochs
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")

    from fruitkeras.callbacks import logging_callbacks

    callbacks = logging_callbacks(run_dir / HISTORY_FILE, run_dir / BACKUP_DIR, append=resume)
    if verbose:
        print(f"training {architecture.name} on {len(train_split)} images "
              f"({len(val_split) if val_split else 0} for validation), {len(split.class_names)} classes, "
              f"{epochs} epochs -> {run_dir}")
    try:
        model.fit(train_data, validation_data=val_data, epochs=epochs, verbose=verbose, shuffle=False,  # the pipeline shuffles
                  callbacks=callbacks + list(extra_callbacks))
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"training interrupted; finished epochs are kept in {run_dir}. "
            f"Continue with: fruitkeras train {architecture_path} --run-dir {run_dir} --resume"
        ) from None
    record["finished"] = _now()
    record["mean_colour"] = datalib.mean_colour(train_split, size, seed=seed)
    metadata = {
        "class_names": split.class_names,
        "input_size": list(size),
        "mean_colour": record["mean_colour"],
        "architecture": architecture.name,
        "trained": record["finished"],
    }
    save_model(model, run_dir / MODEL_FILE, metadata)
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    plot_learning_curves(run_dir / HISTORY_FILE, run_dir / CURVES_FILE)
    return run_dir


def plot_learning_curves(history_path, out_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    history = pd.read_csv(history_path)
    epochs = history["epoch"] + 1
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, history[metric], marker="o", label="training")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    total = history["epoch_seconds"].sum() if "epoch_seconds" in history else None
    title = f"{Path(history_path).parent.name}"
    if total is not None:
        title += f" ({len(history)} epochs, {total / 60:.1f} min)"
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
