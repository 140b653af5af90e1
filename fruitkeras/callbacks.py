"""Callbacks that add to Keras's own training log.

Keras hands one logs dict to every callback in turn, so the order matters:
``EpochEvaluation`` adds the validation and test metrics first, the console
line or progress bar shows them, ``EpochTimestamp`` adds the time (a string
the progress bar could not format), and ``checkpoint.EpochCommit`` writes it
all with the epoch's backup.
"""

import contextlib
import math
import signal
import sys
import threading
import time
from datetime import datetime

import keras


def now_iso():
    """Local wall-clock time, ISO 8601 with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


class EpochEvaluation(keras.callbacks.Callback):
    """At each epoch's end: optionally re-estimate batch-norm statistics
    (precise BN), then add ``val_loss``/``val_accuracy`` and
    ``test_loss``/``test_accuracy`` to the logs.

    Both are evaluated with the moving statistics (inference mode), after the
    re-estimate when there is one.  The test metrics are only logged: nothing
    in training reads them (no early stopping, no checkpoint choice).

    ``statistics_data(epoch)``: the clean training batches of that epoch for precise BN.
    """

    def __init__(self, validation=None, test=None, statistics_data=None, statistics_batches=0):
        super().__init__()
        self.sets = [(prefix, data) for prefix, data in (("val", validation), ("test", test)) if data is not None]
        self.statistics_data = statistics_data
        self.statistics_batches = statistics_batches

    def on_epoch_end(self, epoch, logs=None):
        from fruitkeras.evaluation import loss_and_accuracy
        from fruitkeras.precise_bn import recompute_batchnorm_statistics

        if logs is None:
            return
        if self.statistics_batches:
            recompute_batchnorm_statistics(self.model, self.statistics_data(epoch), self.statistics_batches)
        for prefix, data in self.sets:
            loss, accuracy = loss_and_accuracy(self.model, data() if callable(data) else data)
            logs[f"{prefix}_loss"], logs[f"{prefix}_accuracy"] = loss, accuracy


class EpochTimestamp(keras.callbacks.Callback):
    """Adds ``timestamp`` (local ISO wall-clock time at the epoch's end) and
    ``epoch_seconds`` (its duration, evaluations included) to each epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["epoch_seconds"] = round(time.perf_counter() - self._started, 3)
        logs["timestamp"] = now_iso()


class EpochLine(keras.callbacks.Callback):
    """One plain line per epoch, for logs and pipes (no bar, no colour codes)."""

    SHOWN = ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")

    def __init__(self, epochs, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        parts += [f"{name} {logs[name]:.4f}" for name in self.SHOWN if name in logs]
        if "epoch_seconds" in logs:
            parts.append(f"{logs['epoch_seconds']:.1f} s")
        if "timestamp" in logs:
            parts.append(logs["timestamp"])
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)


@contextlib.contextmanager
def sigint_handled_by(handler):
    """Inside the block a SIGINT calls ``handler`` (``signal.default_int_handler``: KeyboardInterrupt), whatever
    the process was started with: one started with SIGINT ignored (a background job, a test runner's worker)
    must answer Ctrl-C too.  Outside the main thread, where no handler can be set, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class StopAtSafePoint(keras.callbacks.Callback):
    """Turns Ctrl-C into a stop at the next batch or epoch boundary.

    A KeyboardInterrupt raised wherever Python happens to be can land in a
    ``__del__`` or a library's cleanup, where Python prints and drops it, and
    training runs on.  While this is installed (``with stopper:``), SIGINT only
    sets a flag; the callback raises KeyboardInterrupt from Keras's own loop,
    after the callbacks before it have finished the epoch's log and backup.  A
    second Ctrl-C interrupts at once.
    """

    def __init__(self):
        super().__init__()
        self.requested = False
        self._handling = None

    def __enter__(self):
        self._handling = sigint_handled_by(self._on_signal)
        self._handling.__enter__()
        return self

    def __exit__(self, *exc):
        self._handling.__exit__(*exc)
        return False

    def _on_signal(self, signum, frame):
        if self.requested:  # asked twice: the user means now
            raise KeyboardInterrupt
        self.requested = True

    def _check(self, *args, **kwargs):
        if self.requested:
            raise KeyboardInterrupt

    on_epoch_begin = on_epoch_end = on_train_batch_end = on_test_batch_end = _check


class StepKeyedRandomness(keras.callbacks.Callback):
    """Makes the model's own random draws (dropout's masks) a function of the training step.

    Keras's random layers draw from seed generators whose state advances with
    every call and is not part of the weights a backup saves, so a resumed run
    would draw other masks than an uninterrupted one.  Before each step every
    generator's state is set to (its own seed, the step's number), so the masks
    depend on the run's seed, the layer and the step alone.
    """

    def on_train_begin(self, logs=None):
        import numpy as np

        generators = [value for layer in self.model.layers for value in vars(layer).values()
                      if isinstance(value, keras.random.SeedGenerator)]
        self._states = [(generator.state, np.asarray(generator.state.numpy())) for generator in generators]
        self._step = None  # read at the first step: a resumed run's backup is restored after train begins

    def on_train_batch_begin(self, batch, logs=None):
        if self._step is None:
            self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        for state, initial in self._states:
            keyed = initial.copy()
            keyed[-1] = self._step
            state.assign(keyed)
        self._step += 1


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training after an epoch whose loss is NaN or infinite; ``failure`` then says which and when.

    Checked once an epoch (a NaN step makes the epoch's mean loss NaN too), so
    that no step waits on the loss being read back.
    """

    def __init__(self):
        super().__init__()
        self.failure = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = {"epoch": epoch + 1, "loss": str(float(loss))}
            self.model.stop_training = True


def logging_callbacks(history_path, backup_dir, epochs, evaluation, verbose, restored=None):
    """Evaluation, console output, timestamps, the epoch's row and backup, and the Ctrl-C stop, in the order they
    must run.  ``verbose`` as ``train_architecture`` takes it: 0 nothing on the console, 1 a line per epoch, 2 a
    progress bar.  ``restored``: the backup a resumed run goes on from (``fruitkeras.checkpoint``)."""
    from fruitkeras.checkpoint import EpochCommit

    console = [keras.callbacks.ProgbarLogger()] if verbose >= 2 else []
    line = [EpochLine(epochs)] if verbose == 1 else []
    return [StepKeyedRandomness(), StopOnNonFiniteLoss(), evaluation] + console + [
        EpochTimestamp(),
        *line,
        EpochCommit(history_path, backup_dir, restored),
        StopAtSafePoint(),  # last: an epoch's row and backup are written before it stops
    ]
