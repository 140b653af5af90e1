"""An epoch's row in history.csv and its backup, committed together, so that a run folder survives kill -9.

At each epoch's end the whole log, with the new row, replaces history.csv;
then the epoch's backup (every weight and the optimizer's state) is written
beside the previous one and renamed into place.  That rename commits the
epoch.  A kill between the two leaves a row without its backup: ``--resume``
drops the row and trains that epoch again, to the same numbers, since an
epoch's batches are a function of (seed, epoch) alone.  The previous backup
is removed only once the new one is complete, and resume falls back to it
when the newest cannot be read.

Every file is written beside its name and renamed (``fruitkeras.files``), and
the backup is serialised in memory first: a full disk is then a plain
``OSError`` from Python's own write, never a library's half-written file.
"""

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from fruitkeras.errors import FruitkerasError
from fruitkeras.files import write_atomically

BACKUP_NAME = "epoch-{:04d}.npz"
BACKUP_PATTERN = re.compile(r"epoch-(\d{4,})\.npz")
KEPT_BACKUPS = 2  # the newest and the one before it, for a newest that cannot be read
MISSING = "NA"  # a log field an epoch lacks, as Keras's CSVLogger writes it


class Backup(NamedTuple):
    epoch: int  # epochs finished when it was written
    path: Path
    arrays: list  # the values of ``state_variables(model)``, in order


def state_variables(model):
    """What a resumed run needs to go on as if never stopped: the weights (moving statistics included) and the
    optimizer's state (its step count drives the schedule)."""
    return list(model.weights) + list(model.optimizer.variables)


def newest_readable(backup_dir):
    """(the newest backup that reads back whole, or None; [(path, reason)] of the newer ones that do not)."""
    unreadable = []
    for epoch, path in _backups(backup_dir):
        try:
            with np.load(path, allow_pickle=False) as stored:  # zip members are checked against their CRC
                count = int(stored["count"])
                return Backup(epoch, path, [stored[f"v{index}"] for index in range(count)]), unreadable
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            unreadable.append((path, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__))
    return None, unreadable


def read_history(path):
    """(header, rows) of a history.csv, every cell a string; (None, []) when there is none yet."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except FileNotFoundError:
        return None, []
    return (lines[0], lines[1:]) if lines else (None, [])


def write_history(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, buffer.getvalue())


def keep_committed_rows(history_path, epochs):
    """Cut history.csv back to the ``epochs`` rows a backup commits (a row logged after its backup was
    written, by a run killed in between, is trained again).  Fewer rows than that: a FruitkerasError."""
    header, rows = read_history(history_path)
    numbers = [row[0] if row else "" for row in rows[:epochs]]
    if numbers != [str(epoch) for epoch in range(1, epochs + 1)]:
        raise FruitkerasError(f"{history_path} does not log epochs 1 to {epochs}, which the run's backup holds; "
                              "it was changed by hand: train the run again in a new --run-dir")
    if len(rows) > epochs:
        write_history(history_path, header, rows[:epochs])


class EpochCommit(keras.callbacks.Callback):
    """Writes each epoch's row, then its backup (the commit); restores ``restored`` (a Backup) when training
    begins.  Comes after the callbacks that fill the epoch's logs."""

    def __init__(self, history_path, backup_dir, restored=None):
        super().__init__()
        self.history_path, self.backup_dir, self.restored = Path(history_path), Path(backup_dir), restored
        self.header, self.rows = read_history(self.history_path) if restored else (None, [])

    def on_train_begin(self, logs=None):
        if self.restored is None:
            return
        optimizer = self.model.optimizer
        if not optimizer.built:  # fit builds it at the first step; its state must be in place before that
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)
        variables = state_variables(self.model)
        arrays = self.restored.arrays
        if len(arrays) != len(variables) or any(tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, variables)):
            raise FruitkerasError(f"{self.restored.path} does not fit this model and optimizer "
                                  f"({len(arrays)} arrays for {len(variables)} variables); train the run again in "
                                  "a new --run-dir")
        for variable, array in zip(variables, arrays):
            variable.assign(array)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.header is None:
            self.header = ["epoch"] + sorted(logs)  # the columns Keras's CSVLogger gave history.csv
        self.rows.append([epoch + 1] + [logs.get(name, MISSING) for name in self.header[1:]])
        write_history(self.history_path, self.header, self.rows)
        self._write_backup(epoch + 1)

    def _write_backup(self, epoch):
        buffer = io.BytesIO()
        values = [keras.ops.convert_to_numpy(variable) for variable in state_variables(self.model)]
        np.savez(buffer, count=np.array(len(values)), **{f"v{index}": value for index, value in enumerate(values)})
        self.backup_dir.mkdir(exist_ok=True)
        write_atomically(self.backup_dir / BACKUP_NAME.format(epoch), buffer.getvalue())
        for _, path in _backups(self.backup_dir)[KEPT_BACKUPS:]:
            path.unlink(missing_ok=True)


def _backups(backup_dir):
    """[(epoch, path)] of the backups in ``backup_dir``, newest first."""
    found = []
    for path in Path(backup_dir).glob("epoch-*.npz"):
        match = BACKUP_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def describe_unreadable(unreadable):
    return "; ".join(f"{path.name} cannot be read ({reason})" for path, reason in unreadable)
