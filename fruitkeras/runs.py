"""Run folders and model files: where they are, saving and loading them.

A model file is Keras's own ``.keras`` zip with one extra member,
``fruitkeras.json``, holding what the model needs to be used on new images
(class names in output order, input size, the training data's mean colour).
Keras ignores the extra member, so the file stays a plain Keras model.
"""

import json
import os
import zipfile
from pathlib import Path

from fruitkeras.errors import FruitkerasError

MODEL_FILE = "model.keras"
RUNS_DIR = Path("runs")
METADATA_MEMBER = "fruitkeras.json"


def save_model(model, path, metadata):
    """Write the model and its metadata to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    temporary = path.with_name(f".model.tmp-{os.getpid()}.keras")
    try:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def newest_run(runs_dir=RUNS_DIR):
    """The model file of the most recently saved run under ``runs_dir``."""
    models = sorted(Path(runs_dir).glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise FruitkerasError(f"no trained model in {runs_dir}/; train one or pass --model")
    return models[-1]


def resolve_model_path(run_or_model=None):
    """A model file from a run folder, a model file, or (None) the newest run."""
    if run_or_model is None:
        return newest_run()
    path = Path(run_or_model)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise FruitkerasError(f"{path}: no such model file")
    return path


def load_model(path):
    """Load a model file; returns (model, metadata)."""
    import keras

    import fruitkeras.layers  # noqa: F401  registers BatchNorm for deserialisation

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            metadata = json.loads(archive.read(METADATA_MEMBER)) if METADATA_MEMBER in names else None
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError):
        raise FruitkerasError(f"{path}: not a Keras model file (.keras)") from None
    if metadata is None:
        raise FruitkerasError(f"{path}: a Keras model without fruitkeras metadata (class names); train it with fruitkeras")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FruitkerasError(f"{path}: cannot load model ({first_line})") from None
    if model.output_shape[-1] != len(metadata["class_names"]):
        raise FruitkerasError(f"{path}: model has {model.output_shape[-1]} outputs but {len(metadata['class_names'])} class names")
    return model, metadata
