"""The ``fit-familiarity`` command: fit the verdict's statistics (``fruitkeras.familiarity``) of a run
trained before verdicts existed, on the run's own Training data.

Apart from ``familiarity`` so that the statistics know nothing of run folders
and models on disk: ``runs.load_model`` loads the statistics, and this module
loads the model.
"""

import json
from pathlib import Path

from fruitkeras.errors import FruitkerasError
from fruitkeras.familiarity import fit, save


def fit_run(run_dir, data=None, force=False, echo=print):
    """The ``fit-familiarity`` command: fit a finished run's statistics on its own Training data (the run's
    seed, sample limit, validation share and augmentation) and write them into the run folder."""
    from fruitkeras import data as datalib
    from fruitkeras.run_folder import FAMILIARITY_FILE, MODEL_FILE, RUN_FILE
    from fruitkeras.runs import load_model
    from fruitkeras.training import trained_split

    run_dir = Path(run_dir)
    model_path, out = run_dir / MODEL_FILE, run_dir / FAMILIARITY_FILE
    if not model_path.is_file() or not (run_dir / RUN_FILE).is_file():
        raise FruitkerasError(f"{run_dir}: not a finished run folder (no {MODEL_FILE} or {RUN_FILE})")
    if out.exists() and not force:
        raise FruitkerasError(f"{out} exists; --force fits it again (the same data and seed give the same statistics)")
    try:
        record = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError) as error:
        raise FruitkerasError(f"{run_dir / RUN_FILE}: unreadable run record ({error})") from None
    data_root = datalib.resolve_data_dir(data) if data else Path(record["data"])
    model, metadata = load_model(model_path, familiarity=False)  # the stored ones may be the damaged ones
    seed = record.get("seed", 0)
    architecture, split, train_rows, validation_rows = trained_split(run_dir, record, data_root,
                                                                     metadata["class_names"], metadata["input_size"])
    settings = architecture.training
    familiarity = fit(model, split, train_rows, validation_rows, settings["augmentation"], seed)
    save(familiarity, out, model_path)
    echo(f"wrote {out}: fitted on {familiarity.details['training_photos']} training photos, thresholds on "
         f"{familiarity.details['calibration_photos']} held-out ones")
    return out
