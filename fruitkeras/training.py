"""Training a model from an architecture file into a run folder (``fruitkeras.run_folder`` has its layout)."""

import contextlib
import json
import shutil
import signal
import tempfile
from datetime import datetime
from pathlib import Path

from fruitkeras import data as datalib
from fruitkeras import checkpoint, familiarity, precision, run_lock
from fruitkeras.architecture import (build_model, for_precision, load_architecture, parse_architecture, trained_here,
                                     variant_overrides)
from fruitkeras.decoded_cache import decode_cached
from fruitkeras.errors import FruitkerasError, TrainingInterrupted
from fruitkeras.files import TEMPORARY_MARK, is_disk_full, remove_temporaries, write_atomically
from fruitkeras.run_folder import (ARCHITECTURE_COPY, BACKUP_DIR, CURVES_FILE, FAMILIARITY_FILE, HISTORY_FILE,
                                   LOCK_FILE, MODEL_FILE, RUN_FILE, RUNS_DIR, resume_command)
from fruitkeras.runs import failed_run_message, is_finished, load_model, save_model


def default_run_dir(architecture):
    return RUNS_DIR / f"{architecture.name}-{datetime.now():%Y%m%d-%H%M%S}"


# What a training writes before run.json: a folder holding only these (and temporaries) never started its run.
STARTING_FILES = (LOCK_FILE, ARCHITECTURE_COPY)


def check_run_dir(run_dir, resume):
    """Refuse to overwrite a finished run or to restart an unfinished one silently; a folder that a training
    killed before its first record left is started again."""
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        raise FruitkerasError(f"{run_dir} already holds a finished run ({MODEL_FILE}); choose another --run-dir")
    if resume:
        if not (run_dir / RUN_FILE).exists():
            raise FruitkerasError(f"{run_dir}: no unfinished run to resume (no {RUN_FILE})")
        failed = failed_run_message(run_dir)
        if failed:
            raise FruitkerasError(failed + "; resuming would repeat the same steps")
    elif (run_dir / RUN_FILE).exists():
        raise FruitkerasError(f"{run_dir} holds an unfinished run; continue it with --resume or choose another --run-dir")
    elif run_dir.exists() and any(path.name not in STARTING_FILES and TEMPORARY_MARK not in path.name
                                  for path in run_dir.iterdir()):
        raise FruitkerasError(f"{run_dir} exists and is not empty; choose another --run-dir")


def _optimizer(settings, steps_per_epoch, epochs):
    import keras

    rate = settings["learning_rate"]
    total = steps_per_epoch * epochs
    warmup = min(settings["warmup_epochs"] * steps_per_epoch, total)
    cycle = settings["first_cycle_epochs"] * steps_per_epoch
    if settings["schedule"] == "cosine" and not warmup and 0 < cycle < total:
        # t_mul stretches the second cycle over all the remaining steps.
        rate = keras.optimizers.schedules.CosineDecayRestarts(rate, cycle, t_mul=(total - cycle) / cycle)
    elif settings["schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else rate, decay_steps=max(total - warmup, 1),
            warmup_target=rate if warmup else None, warmup_steps=warmup,
        )
    elif warmup:  # a linear warm-up, then constant (alpha=1: the "decay" keeps the full rate)
        rate = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=1, alpha=1.0, warmup_target=rate,
                                                      warmup_steps=warmup)
    options = {"learning_rate": rate}
    kind = settings["optimizer"]
    # AdamW's own default decay (0.004) would replace a 0 that is left out: always pass it.
    if settings["weight_decay"] or kind == "adamw":
        options["weight_decay"] = settings["weight_decay"]
    if kind in ("sgd", "rmsprop"):
        options["momentum"] = settings["momentum"]
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[kind](**options)


def _loss(settings, class_names):
    """Sparse cross-entropy, with label smoothing when asked (``fruitkeras.losses``)."""
    if not settings["label_smoothing"]:
        return "sparse_categorical_crossentropy"
    from fruitkeras.losses import SmoothedSparseCrossEntropy

    return SmoothedSparseCrossEntropy(len(class_names), settings["label_smoothing"])


# Options that --resume takes from run.json; a different value on the command line is refused.
RESUME_FIXED = ("seed", "limit_per_class", "data", "test_evaluation", "overrides")
OPTION_NAMES = {"overrides": "--set"}  # where the option is not the name with dashes


def _resume_record(run_dir, architecture, given):
    """run.json of the run to resume, after checking the architecture and the options given."""
    record = json.loads((run_dir / RUN_FILE).read_text())
    saved = json.loads((run_dir / ARCHITECTURE_COPY).read_text())
    if saved != architecture.source:
        raise FruitkerasError(
            f"{architecture.path} differs from the run's copy {run_dir / ARCHITECTURE_COPY}; "
            "resume with that copy or start a new run"
        )
    for name in RESUME_FIXED:
        value = given.get(name)
        stored = record.get(name)
        if name == "data" and value is not None:
            value = str(Path(value).resolve())
        if value is not None and value != stored:
            option = OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
            raise FruitkerasError(
                f"{option} {given[name]} conflicts with the run's own {name} {stored} ({run_dir / RUN_FILE}); "
                f"--resume continues with the stored value: drop {option}"
            )
    return record


def train_architecture(
    architecture_path,
    data=None,
    run_dir=None,
    epochs=None,
    seed=None,
    limit_per_class=None,
    resume=False,
    verbose=1,
    test_evaluation=None,
    extra_callbacks=(),
    distribute="none",
    devices=None,
    mixed_precision=None,
    overrides=None,
):
    """Train and save a model; returns the run folder.

    ``verbose``: 0 silent, 1 one line per epoch, 2 a progress bar.  On
    --resume the run's own architecture copy, seed, sample limit, data folder
    and test evaluation are used (a different value given is refused), so the
    validation split and class order match.

    ``overrides``: ``--set FIELD=VALUE`` changes to the architecture file's
    fields (``architecture.with_overrides``), recorded in run.json and reapplied
    on --resume.

    ``distribute``, ``devices``: ``fruitkeras.distribute``'s strategies;
    ``mixed_precision``: float16 (GPU) or bfloat16 compute; None: the file's ``training.mixed_precision``.
    """
    from fruitkeras import distribute as distribution

    architecture = load_architecture(architecture_path)
    # Before any TensorFlow work: splitting the CPU into devices must precede the runtime's start.
    strategy = distribution.make_strategy(distribute, devices)
    run_dir = Path(run_dir) if run_dir else default_run_dir(architecture)
    chief = distribution.is_chief(strategy)  # the other workers of a multi-worker run write elsewhere
    with run_lock.held(run_dir) if chief else contextlib.nullcontext():
        if chief:
            check_run_dir(run_dir, resume)
            remove_temporaries(run_dir)  # what a writer killed mid-write left (backup/ too); none writes now
        try:
            return _train_checked(architecture, architecture_path, data, run_dir, epochs, seed, limit_per_class,
                                  resume, verbose, test_evaluation, extra_callbacks, distribute, strategy,
                                  mixed_precision, overrides)
        except OSError as error:
            if not is_disk_full(error):
                raise
            where = f" writing {error.filename}" if error.filename else ""
            if (run_dir / RUN_FILE).exists():
                then = (f"the finished epochs are kept in {run_dir}; free some space, then continue with: "
                        f"{resume_command(architecture_path, run_dir)}")
            else:
                then = "nothing was kept; free some space, then run the command again"
            raise FruitkerasError(f"the disk is full{where}: {then}") from None


def _train_checked(architecture, architecture_path, data, run_dir, epochs, seed, limit_per_class, resume, verbose,
                   test_evaluation, extra_callbacks, distribute, strategy, mixed_precision, overrides):
    from fruitkeras import distribute as distribution

    given = {"seed": seed, "limit_per_class": limit_per_class, "data": data, "test_evaluation": test_evaluation,
             "overrides": list(overrides) if overrides else None}
    record = {}
    if resume:
        record = _resume_record(run_dir, architecture, given)
        architecture = parse_architecture(architecture.source, run_dir / ARCHITECTURE_COPY)
        overrides = record.get("overrides")
        seed, limit_per_class = record["seed"], record["limit_per_class"]
        test_evaluation = record.get("test_evaluation", True)
        epochs = epochs or record["epochs"]
        data_root = _stored_data_dir(record, run_dir)
    else:
        seed = 0 if seed is None else seed
        test_evaluation = True if test_evaluation is None else test_evaluation
        data_root = datalib.resolve_data_dir(data)
    if record.get("precision"):
        # A resumed run keeps the precision it started with: its history goes on in the same arithmetic and,
        # where the file has by_precision changes, with the same recipe.
        chosen = precision.Precision.from_record(record["precision"])
        architecture = for_precision(architecture, chosen.compute, overrides)
    else:
        chosen, architecture = trained_here(architecture, overrides, mixed_precision)
    epochs = epochs or architecture.training["epochs"]
    size = architecture.input_size

    # List both splits (reading no image) and check them before any work.
    listed, test_listed = datalib.list_splits(data_root, limit_per_class, seed)
    if resume:
        datalib.check_same_classes(record["class_names"], listed.class_names, "the run", f"{data_root}/Training/")
    if test_listed is None and test_evaluation and verbose:
        print(f"note: no {data_root / datalib.TEST_SPLIT}/: history.csv will have no test_loss and test_accuracy",
              flush=True)

    if verbose:  # once the data has passed its checks: a refusal stays one line
        variant = variant_overrides(architecture.source, chosen.compute)
        print(f"precision: {chosen.compute} ({'as the run started: ' if resume else ''}{chosen.reason})"
              + (f"; the file's {chosen.compute} changes: {', '.join(variant)}" if variant else ""), flush=True)
    split = decode_cached(listed, size, quiet=not verbose)
    with precision.policy_scope(chosen), \
            _writing_dir(run_dir, distribution.is_chief(strategy), resume) as write_dir:
        return _train_decoded(architecture, architecture_path, split, test_listed if test_evaluation else None,
                              data_root, run_dir, write_dir, epochs, seed, limit_per_class, resume, record, verbose,
                              test_evaluation, extra_callbacks, strategy,
                              distribution.describe(strategy, distribute) | {
                                  "mixed_precision": chosen.policy if chosen.mixed else None}, chosen)


def _stored_data_dir(record, run_dir):
    path = Path(record["data"])
    if not path.is_dir():
        raise FruitkerasError(f"dataset folder {path} (from {run_dir / RUN_FILE}) not found; "
                              "the run must resume on the data it started with")
    return path


@contextlib.contextmanager
def _writing_dir(run_dir, chief, resume):
    """Where this process writes: the run folder for the chief; for a multi-worker run's other workers a
    temporary folder (with the chief's backup when resuming), deleted however training ends."""
    if chief:
        yield run_dir
        return
    folder = Path(tempfile.mkdtemp(prefix="fruitkeras-worker-"))
    try:
        if resume and (run_dir / BACKUP_DIR).is_dir():
            shutil.copytree(run_dir / BACKUP_DIR, folder / BACKUP_DIR)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _train_decoded(architecture, architecture_path, split, test_listed, data_root, final_dir, run_dir, epochs, seed,
                   limit_per_class, resume, record, verbose, test_evaluation, extra_callbacks, strategy, distributed,
                   chosen):
    import keras

    from fruitkeras import distribute as distribution
    from fruitkeras.augmentation import make_augmenter
    from fruitkeras.callbacks import EpochEvaluation, logging_callbacks, now_iso

    settings = architecture.training
    replicas = distribution.replicas(strategy)
    if settings["batch_size"] % replicas:
        raise FruitkerasError(f"{architecture.path}: training.batch_size {settings['batch_size']} (the global batch) "
                              f"does not split evenly over {replicas} replicas")
    chief = run_dir == final_dir  # only the chief writes the run folder (``_writing_dir``)
    datalib.report_skipped(split)
    train_rows, val_rows = datalib.split_validation(split, settings["validation_split"], seed,
                                                    settings["validation_block"])
    keras.utils.set_random_seed(seed)  # weights' initialisation and dropout
    batch_size = settings["batch_size"]
    if batch_size > len(train_rows):
        raise FruitkerasError(f"{architecture.path}: training.batch_size {batch_size} is larger than the training "
                              f"set ({len(train_rows)} images after validation's share); lower it")
    # A resumed run goes on with the epoch its backup holds: the stream (order, augmentation) of epoch e
    # is a function of (seed, e), so it sees the batches an uninterrupted run would.
    trained = resume and (run_dir / MODEL_FILE).exists()  # stopped after its model was saved: no epoch to train
    restored = _restore_point(run_dir, chief, verbose) if resume and not trained else None
    first_epoch = epochs if trained else restored.epoch if restored else 0
    if trained and verbose:
        print("resuming after the last epoch: the model is saved; writing what the run still lacks", flush=True)
    train_data = datalib.make_dataset(
        split, batch_size, shuffle=True, seed=seed, augmenter=make_augmenter(settings["augmentation"]),
        augment_from_epoch=settings["augmentation_from_epoch"] - 1,
        repeat=True, rows=train_rows, first_epoch=first_epoch,  # one iterator for all epochs (steps_per_epoch below)
    )
    if strategy is not None:
        train_data = distribution.shard_batches(train_data)
    evaluation_batch = max(batch_size, 256)  # inference only: bigger batches are faster
    val_data = datalib.make_dataset(split, evaluation_batch, rows=val_rows) if len(val_rows) else None

    def test_data():
        # Decoded when the first epoch ends, not before: the first step comes sooner.
        test_split = decode_cached(test_listed, architecture.input_size, quiet=not verbose)
        datalib.report_skipped(test_split)
        datalib.relabel(test_split, split.class_names)
        return datalib.make_dataset(test_split, evaluation_batch)

    def statistics_data(epoch):
        # Precise BN's clean batches: a stream of their own, keyed on (seed + 1, epoch) like training's.
        return datalib.make_dataset(split, batch_size, shuffle=True, seed=seed + 1, rows=train_rows, first_epoch=epoch)

    evaluation = EpochEvaluation(val_data, _once(test_data) if test_listed else None,
                                 statistics_data if settings["precise_bn_batches"] else None,
                                 settings["precise_bn_batches"])

    num_classes = len(split.class_names)
    steps_per_epoch = max(len(train_rows) // batch_size, 1)
    with distribution.scope(strategy):
        model = build_model(architecture, num_classes)
        model.compile(optimizer=_optimizer(settings, steps_per_epoch, epochs),
                      loss=_loss(settings, split.class_names), metrics=["accuracy"],
                      steps_per_execution=settings["steps_per_execution"],
                      jit_compile="auto" if settings["jit_compile"] is None else settings["jit_compile"])

    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        record = {
            "architecture": architecture.name,
            "architecture_file": str(Path(architecture.path).resolve()),
            "data": str(Path(data_root).resolve()),
            "seed": seed,
            "limit_per_class": limit_per_class,
            "test_evaluation": test_evaluation,
            "overrides": list(architecture.overrides),
            "epochs": epochs,
            "class_names": split.class_names,
            "train_images": len(train_rows),
            "validation_images": len(val_rows),
            "parameters": int(model.count_params()),
            "started": now_iso(),
        }
    else:
        record.setdefault("resumed", []).append({"after_epoch": first_epoch, "at": now_iso()})
    record["distribute"] = distributed
    record["precision"] = chosen.record()
    record["epochs"] = epochs
    if resume:
        _write_record(run_dir, record)
    else:  # the copy first: a folder with run.json is a run that --resume can continue
        try:
            write_atomically(run_dir / ARCHITECTURE_COPY, Path(architecture.path).read_bytes())
            _write_record(run_dir, record)
        except OSError:
            (run_dir / ARCHITECTURE_COPY).unlink(missing_ok=True)  # a full disk: leave nothing half begun
            raise

    callbacks = logging_callbacks(run_dir / HISTORY_FILE, run_dir / BACKUP_DIR, epochs=epochs,
                                  evaluation=evaluation, verbose=verbose, restored=restored)
    if verbose:
        print(f"training {architecture.name} ({model.count_params():,} parameters) on {len(train_rows)} images "
              f"({len(val_rows)} for validation), {num_classes} classes, "
              f"{epochs} epochs -> {final_dir}"
              + (f" on {replicas} replicas ({record['distribute']['strategy']}), batch {batch_size // replicas} each"
                 if replicas > 1 else "")
              + ("" if chief else f" (a worker: it writes to {run_dir})"), flush=True)
    if trained:  # the saved model is the trained one
        model, _ = load_model(run_dir / MODEL_FILE, familiarity=False)
    else:
        _fit(model, strategy, train_data, first_epoch, epochs, steps_per_epoch, verbose, callbacks, extra_callbacks,
             record, run_dir, final_dir, architecture_path)
    if not chief:  # the chief saves the model; this worker's folder held only its callbacks' files
        return final_dir
    from fruitkeras.callbacks import sigint_handled_by

    try:
        with sigint_handled_by(signal.default_int_handler):  # as during the epochs (StopAtSafePoint)
            _finish(model, architecture, split, train_rows, val_rows, seed, record, run_dir)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted after the last epoch, before the run was finished; {final_dir} is kept unfinished. "
            f"Continue with: {resume_command(architecture_path, final_dir)}"
        ) from None
    return final_dir


def _fit(model, strategy, train_data, first_epoch, epochs, steps_per_epoch, verbose, callbacks, extra_callbacks,
         record, run_dir, final_dir, architecture_path):
    """``model.fit`` with a one-line Ctrl-C and a run marked failed when the loss turns non-finite."""
    from fruitkeras import distribute as distribution
    from fruitkeras.callbacks import StopOnNonFiniteLoss

    distribution.build_for_fit(model, strategy, train_data)
    stopper = callbacks[-1]
    [nonfinite] = [callback for callback in callbacks if isinstance(callback, StopOnNonFiniteLoss)]
    try:
        with stopper:
            model.fit(train_data, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
                      verbose=1 if verbose >= 2 else 0, shuffle=False,  # the pipeline shuffles
                      callbacks=callbacks + list(extra_callbacks))
    except KeyboardInterrupt:
        if verbose >= 2:
            print(flush=True)  # end the progress bar's line before the message
        raise TrainingInterrupted(
            f"training interrupted; finished epochs are kept in {final_dir}. "
            f"Continue with: {resume_command(architecture_path, final_dir)}"
        ) from None
    finally:
        record.pop("running_pid", None)  # written by earlier versions; the lock (``run_lock``) tells it now
        if nonfinite.failure:
            record["failed"] = nonfinite.failure  # no command takes this folder for a model (runs.failed_run_message)
        _write_record(run_dir, record)
    if nonfinite.failure:
        raise FruitkerasError(
            f"training failed: the loss became {nonfinite.failure['loss']} in epoch {nonfinite.failure['epoch']}, so "
            f"{final_dir} is marked failed and holds no model; lower training.learning_rate or check the data, "
            "and train a new run")


def _finish(model, architecture, split, train_rows, val_rows, seed, record, run_dir):
    """The work after the last epoch: the model, the verdict's statistics, the figure, and last of all
    run.json's "finished", so that a run stopped anywhere before is unfinished and --resume completes it."""
    from fruitkeras.callbacks import now_iso

    record["mean_colour"] = datalib.mean_colour(split, train_rows, seed=seed)
    metadata = {
        "class_names": split.class_names,
        "input_size": list(architecture.input_size),
        "mean_colour": record["mean_colour"],
        "architecture": architecture.name,
        "trained": now_iso(),
    }
    save_model(model, run_dir / MODEL_FILE, metadata)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # from here on --resume starts from the model
    # The verdict's statistics, on Training photos only (never Test).
    familiarity.save(familiarity.fit(model, split, train_rows, val_rows, architecture.training["augmentation"], seed),
                     run_dir / FAMILIARITY_FILE, run_dir / MODEL_FILE)
    from fruitkeras.figures import plot_learning_curves

    plot_learning_curves(run_dir / HISTORY_FILE, run_dir / CURVES_FILE, record.get("resumed", ()))
    record["finished"] = now_iso()
    _write_record(run_dir, record)


def trained_split(run_dir, record, data_root, class_names, size):
    """A finished run's Training split as it was trained: the seed, sample limit and overrides of its
    ``record`` (run.json), its validation share carved as training carved it.  Returns (architecture with the
    overrides, decoded split labelled in ``class_names``' order, training rows, validation rows)."""
    run_dir, data_root = Path(run_dir), Path(data_root)
    architecture = for_precision(load_architecture(run_dir / ARCHITECTURE_COPY),
                                 precision.recorded_compute(record) or "float32", record.get("overrides"))
    if not (data_root / datalib.TRAIN_SPLIT).is_dir():
        raise FruitkerasError(f"{data_root / datalib.TRAIN_SPLIT}: no such folder; name the run's data with --data")
    seed = record.get("seed", 0)
    listed = datalib.scan_split(data_root / datalib.TRAIN_SPLIT, record.get("limit_per_class"), seed)
    datalib.check_same_classes(class_names, listed.class_names, "the model", f"{data_root / datalib.TRAIN_SPLIT}/")
    split = decode_cached(listed, tuple(size), quiet=True)
    datalib.relabel(split, class_names)
    settings = architecture.training
    train_rows, validation_rows = datalib.split_validation(split, settings["validation_split"], seed,
                                                           settings["validation_block"])
    return architecture, split, train_rows, validation_rows


def _restore_point(run_dir, chief, verbose):
    """The newest readable backup of the run to resume (None: from the start), its history cut back to match;
    says which epoch the run goes on from."""
    restored, unreadable = checkpoint.newest_readable(run_dir / BACKUP_DIR)
    epochs = restored.epoch if restored else 0
    if chief:  # another worker's folder holds no history of its own
        checkpoint.keep_committed_rows(run_dir / HISTORY_FILE, epochs)
    if verbose:
        skipped = f" ({checkpoint.describe_unreadable(unreadable)})" if unreadable else ""
        print(f"resuming after epoch {epochs}{skipped}" if epochs else
              f"resuming from the start: no backup of a finished epoch{skipped}", flush=True)
    return restored


def _once(make):
    """``make()`` on the first call, the same result after."""
    made = []

    def get():
        if not made:
            made.append(make())
        return made[0]

    return get


def _write_record(run_dir, record):
    write_atomically(run_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")
