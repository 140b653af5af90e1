"""Run folders and model files: where they are, saving and loading them.

A model file is Keras's own ``.keras`` zip with one extra member,
``fruitkeras.json``, holding what the model needs to be used on new images
(class names in output order, input size, the training data's mean colour).
Keras ignores the extra member, so the file stays a plain Keras model.
"""

import json
import zipfile
from pathlib import Path

from fruitkeras import run_lock
from fruitkeras.errors import FruitkerasError
from fruitkeras.files import replaced_atomically
from fruitkeras.precision import recorded_compute

from fruitkeras.run_folder import (HISTORY_FILE, METRICS_FILE, MODEL_FILE, RUN_FILE, RUNS_DIR, SHIPPED_RUN,  # noqa: E402
                                   resume_command)

METADATA_MEMBER = "fruitkeras.json"


def save_model(model, path, metadata):
    """Write the model and its metadata to ``path`` atomically (temp file + rename)."""
    with replaced_atomically(path) as temporary:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))


def read_record(run_dir):
    """A run folder's run.json, {} where it is missing or unreadable."""
    try:
        return json.loads((Path(run_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _finished_at(model_path):
    """When a run finished, from its run.json (file times change with every checkout)."""
    return read_record(model_path.parent).get("finished", "")


def is_finished(run_dir):
    """Whether a run folder holds a finished run: its model and run.json's "finished", written last of all."""
    run_dir = Path(run_dir)
    return (run_dir / MODEL_FILE).exists() and bool(read_record(run_dir).get("finished"))


def _cut_short_after_training(run_dir, record):
    """A model file, but a run.json (``record``) without "finished": stopped after its last epoch, before the
    run was whole."""
    run_dir = Path(run_dir)
    return (run_dir / MODEL_FILE).exists() and (run_dir / RUN_FILE).exists() and not record.get("finished")


def newest_run(runs_dir=RUNS_DIR):
    """The model file of the most recently finished run under ``runs_dir``."""
    models = []
    for path in Path(runs_dir).glob(f"*/{MODEL_FILE}"):
        record = read_record(path.parent)  # read once: both the check and the order need it
        if not _cut_short_after_training(path.parent, record):
            models.append(((record.get("finished", ""), path.stat().st_mtime), path))
    models = [path for _, path in sorted(models)]
    if not models:
        raise FruitkerasError(f"no trained model in {Path(runs_dir).resolve()}/; train one (fruitkeras train ARCH.json) "
                              f"or name a run folder or model file; the shipped run, {SHIPPED_RUN}, "
                              "comes with the repository's checkout, not with the installed package")
    return models[-1]


def resolve_model_path(run_or_model=None):
    """A model file from a run folder, a model file, or (None) the newest run."""
    if run_or_model is None:
        return newest_run()
    path = Path(run_or_model)
    if path.is_dir():
        unfinished = unfinished_run_message(path)
        if unfinished:
            raise FruitkerasError(unfinished)
        path = path / MODEL_FILE
    if not path.is_file():
        raise FruitkerasError(f"{path}: no such model file")
    return path


def failed_run_message(run_dir, record=None):
    """What to say of a run whose training failed (its loss became NaN or infinite); None for any other.

    ``record``: its run.json when already read."""
    failure = (read_record(run_dir) if record is None else record).get("failed")
    if not failure:
        return None
    return (f"{run_dir} is a failed run (the loss became {failure.get('loss', 'not finite')} in epoch "
            f"{failure.get('epoch', '?')}): it has no model")


def unfinished_run_message(run_dir):
    """What to say of a run folder that has started but holds no model yet; None for anything else."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    failed = failed_run_message(run_dir, record)
    if failed:
        return failed + "; train a new run with a changed recipe"
    architecture = record.get("architecture_file", "ARCH.json")
    if _cut_short_after_training(run_dir, record):
        return (f"{run_dir} is an unfinished run (stopped after its last epoch, before its verdict statistics and "
                f"figures were written): continue it with: {resume_command(architecture, run_dir)}")
    if (run_dir / MODEL_FILE).exists() or not (run_dir / RUN_FILE).exists():
        return None
    done = epochs_logged(run_dir / HISTORY_FILE)
    state = "still training" if run_lock.holder(run_dir) else "interrupted"
    return (f"{run_dir} is an unfinished run ({state} after {done} of {record.get('epochs', '?')} epochs): no model "
            f"yet; continue it with: {resume_command(architecture, run_dir)}")


def _started_at(run_dir):
    try:
        return json.loads((Path(run_dir) / RUN_FILE).read_text()).get("started", "")
    except (OSError, ValueError):
        return ""


def choice_warnings(model_path, runs_dir=RUNS_DIR):
    """What a user should know about the model a command uses: that its run is unfinished; when it is a run in
    ``runs_dir``, that a newer run finished, or that newer runs are unfinished (they are never picked by default)."""
    model_path, runs_dir = Path(model_path).resolve(), Path(runs_dir)
    # A model file named directly inside an unfinished run (a run folder named so is refused before).
    warnings = [unfinished_run_message(model_path.parent)] if _cut_short_after_training(
        model_path.parent, read_record(model_path.parent)) else []
    if warnings or not runs_dir.is_dir() or model_path.parent.parent != runs_dir.resolve():
        return warnings
    newest = newest_run(runs_dir).resolve()
    if newest != model_path:
        warnings.append(f"{model_path.parent.name} is not the newest finished run in {runs_dir}/: "
                        f"{newest.parent.name} finished later")
    since = _finished_at(model_path) or _started_at(model_path.parent)
    for folder in sorted(p.parent for p in runs_dir.glob(f"*/{RUN_FILE}")):
        if not (folder / MODEL_FILE).exists() and _started_at(folder) > since:
            warnings.append(f"{folder.name} started later but is unfinished; it is never used by default "
                            f"(see: fruitkeras runs)")
    return warnings


def _not_a_model(path):
    """Tell a damaged .keras zip (cut short, say) from a file that never was one."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    if start == b"PK\x03\x04":
        return f"{path}: damaged or incomplete model file (the zip archive is cut short or corrupt); copy or train it again"
    return f"{path}: not a Keras model file (.keras)"


def load_model(path, familiarity=True):
    """Load a model file; returns (model, metadata).

    ``metadata["familiarity"]``: the verdict's statistics stored beside the model (``fruitkeras.familiarity``),
    None for a run fitted before them (or when ``familiarity`` is false: not read).
    """
    import keras

    import fruitkeras.layers  # noqa: F401  registers BatchNorm for deserialisation

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            metadata = json.loads(archive.read(METADATA_MEMBER)) if METADATA_MEMBER in names else None
    except zipfile.BadZipFile:
        raise FruitkerasError(_not_a_model(path)) from None
    except (OSError, json.JSONDecodeError, zipfile.LargeZipFile, EOFError) as error:
        raise FruitkerasError(f"{path}: damaged or incomplete model file ({error})") from None
    if metadata is None:
        raise FruitkerasError(f"{path}: a Keras model without fruitkeras metadata (class names); train it with fruitkeras")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FruitkerasError(f"{path}: cannot load model ({first_line})") from None
    if model.output_shape[-1] != len(metadata["class_names"]):
        raise FruitkerasError(f"{path}: model has {model.output_shape[-1]} outputs but {len(metadata['class_names'])} class names")
    from fruitkeras.familiarity import load_beside

    metadata["familiarity"] = load_beside(path) if familiarity else None
    return model, metadata


def epochs_logged(history_path):
    """How many epochs a history.csv holds (0 when there is none yet)."""
    if not Path(history_path).exists():
        return 0
    with open(history_path, encoding="utf-8") as history:
        return max(sum(1 for _ in history) - 1, 0)


def describe_runs(runs_dir=RUNS_DIR):
    """One dict per run folder under ``runs_dir``, oldest first: what ``fruitkeras runs`` lists."""
    rows = []
    for record_path in sorted(Path(runs_dir).glob(f"*/{RUN_FILE}")):
        folder = record_path.parent
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            rows.append({"name": folder.name, "status": "unreadable run.json"})
            continue
        epochs_done = epochs_logged(folder / HISTORY_FILE)
        test_accuracy = test_data = None
        metrics = folder / METRICS_FILE
        if metrics.exists():
            try:
                measured = json.loads(metrics.read_text())
                test_accuracy, test_data = measured["accuracy"], f"on {Path(measured.get('data', '?')).name}"
            except (OSError, ValueError, KeyError):
                pass
        if test_accuracy is None:  # not evaluated yet: the log's own proof, its last epoch
            logged = last_logged_test_accuracy(folder / HISTORY_FILE)
            if logged:
                test_accuracy, test_data = logged[1], f"logged, epoch {logged[0]}"
        status = ("failed" if record.get("failed") else _finished_status(folder) if is_finished(folder)
                  else "running" if run_lock.holder(folder) else "interrupted")
        rows.append({
            "name": folder.name,
            "architecture": record.get("architecture", "?"),
            "epochs": f"{epochs_done}/{record.get('epochs', '?')}",
            "precision": recorded_compute(record),
            "status": status,
            "test_accuracy": test_accuracy,
            "test_data": test_data,  # the data folder the figure came from
            "date": (record.get("finished") or record.get("started") or "")[:16].replace("T", " "),
        })
    return sorted(rows, key=lambda row: row.get("date", ""))


def last_logged_test_accuracy(history_path):
    """(epoch, test_accuracy) of a history.csv's last row that has one; None when none has."""
    import csv

    try:
        with open(history_path, newline="", encoding="utf-8") as history:
            rows = [row for row in csv.DictReader(history) if row.get("test_accuracy")]
        return (int(rows[-1]["epoch"]), float(rows[-1]["test_accuracy"])) if rows else None
    except (OSError, ValueError, KeyError, csv.Error):
        return None


def _finished_status(run_dir):
    """"finished" when the model file reads back whole (every member's checksum), else "damaged model"."""
    try:
        with zipfile.ZipFile(Path(run_dir) / MODEL_FILE) as archive:
            return "finished" if archive.testzip() is None else "damaged model"
    except (OSError, zipfile.BadZipFile, EOFError):
        return "damaged model"


def format_runs(rows, runs_dir=RUNS_DIR):
    if not rows:
        return f"no runs in {runs_dir}/"
    header = ("run", "architecture", "epochs", "precision", "status", "test acc.", "date")
    table = [header] + [(
        row["name"], row.get("architecture", ""), row.get("epochs", ""), row.get("precision") or "-", row["status"],
        "-" if row.get("test_accuracy") is None else f"{row['test_accuracy']:.4f} {row['test_data']}",
        row.get("date", ""),
    ) for row in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(f"{str(cell):<{width}}" for cell, width in zip(line, widths)).rstrip() for line in table)
