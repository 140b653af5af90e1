"""Callbacks that add to Keras's own training log."""

import time
from datetime import datetime

import keras


class EpochTimestamp(keras.callbacks.Callback):
    """Adds ``timestamp`` (local ISO wall-clock time at the epoch's end) and
    ``epoch_seconds`` (its duration, validation included) to each epoch's logs.

    Keras hands one logs dict to every callback in turn, so a CSVLogger placed
    after this one writes both columns.  It must come after the ProgbarLogger,
    which cannot format a string.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["epoch_seconds"] = round(time.perf_counter() - self._started, 3)
        logs["timestamp"] = datetime.now().astimezone().isoformat(timespec="seconds")


def logging_callbacks(history_path, backup_dir, append):
    """Progress bar, timestamps, resumable backup and the CSV log, in the order they must run."""
    return [
        keras.callbacks.ProgbarLogger(),
        EpochTimestamp(),
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        keras.callbacks.CSVLogger(str(history_path), append=append),
    ]
