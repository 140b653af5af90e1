"""The ``eval`` command's reports: what it prints, where it writes, and the files it writes there.

The evaluating itself is ``fruitkeras.evaluation``; the drawing is ``fruitkeras.figures``.
"""

import json
from pathlib import Path

from fruitkeras import data as datalib
from fruitkeras.errors import FruitkerasError
from fruitkeras.evaluation import evaluate, top_confusions
from fruitkeras.files import replaced_atomically, write_atomically
from fruitkeras.run_folder import EVALUATIONS_DIR, RUN_FILE, report_files


def evaluate_run(model_path, data=None, out=None, batch_size=64, bn_train_mode=False, echo=print, distribute="none",
                 devices=None):
    """The ``eval`` command: evaluate a model file on Test/, print the results, write the reports.

    ``distribute``: "none" or "mirrored" (over ``devices``; ``fruitkeras.distribute``).
    """
    from fruitkeras import distribute as distribution
    from fruitkeras.runs import load_model

    strategy = distribution.make_strategy(distribute, devices)
    recorded = None if data else run_data_dir(model_path)
    data_root = recorded or datalib.resolve_data_dir(data)
    if recorded:
        echo(f"data: {recorded}, the run's own (its {RUN_FILE}); --data evaluates on another")
    redirected = False
    if out is None:
        out = default_report_dir(model_path, data_root)
        redirected = out != Path(model_path).parent
    check_writable(Path(out))  # before the work, not after it
    with distribution.scope(strategy):
        model, metadata = load_model(model_path, familiarity=False)  # eval gives no verdicts
    if strategy is not None and batch_size % strategy.num_replicas_in_sync:
        raise FruitkerasError(f"--batch-size {batch_size} does not split evenly over "
                              f"{strategy.num_replicas_in_sync} replicas")
    result = evaluate(model, metadata, data_root, batch_size=batch_size, bn_train_mode=bn_train_mode,
                      distributed=strategy is not None)
    correct = int((result.predictions == result.labels).sum())
    echo(f"model: {model_path}")
    echo(f"test accuracy: {result.accuracy:.4f} ({correct}/{len(result.labels)})  loss: {result.loss:.4f}"
         + ("  [batch statistics]" if bn_train_mode else ""))
    table = result.per_class()
    width = max(len(name) for name in table["class"])
    for row in table.itertuples():
        echo(f"  {row[1]:<{width}}  {row.accuracy:.4f}  ({row.correct}/{row.images})")
    confusions = top_confusions(result.confusion, result.class_names, 5)
    if confusions:
        echo("most frequent confusions: " + "; ".join(f"{t} -> {p} ({n})" for t, p, n in confusions))
    if redirected:  # said once the evaluation worked: a refusal stays one line
        echo(f"note: {data_root} is not the data this run was trained on, so its recorded result stays as it is; "
             f"the reports go to {out}")
    for path in write_report(result, out, model_path, data_root, bn_train_mode):
        echo(f"wrote {path}")
    return result


def run_data_dir(model_path):
    """The data folder that the run holding ``model_path`` was trained on (its run.json), if it is still there."""
    from fruitkeras.runs import read_record

    recorded = read_record(Path(model_path).parent).get("data")
    return Path(recorded) if isinstance(recorded, str) and Path(recorded).is_dir() else None


def default_report_dir(model_path, data_root):
    """Where ``eval`` writes without --out: the model's folder, unless that is a run trained on other data.

    A run folder's reports are its recorded proof, shown by ``runs`` and the page: only an evaluation on the
    data the run records rewrites them.  Others go to ``evaluations/<run>-on-<data folder>/``.
    """
    folder = Path(model_path).parent
    try:
        recorded = json.loads((folder / RUN_FILE).read_text()).get("data")
    except (OSError, ValueError):
        return folder  # a model file outside a run folder: nothing recorded to protect
    if recorded and Path(recorded).resolve() == Path(data_root).resolve():
        return folder
    return EVALUATIONS_DIR / f"{folder.name}-on-{Path(data_root).resolve().name}"


def check_writable(out_dir):
    """A one-line error, before any evaluation, when the reports could not be written into ``out_dir``."""
    import os

    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise FruitkerasError(f"cannot write the reports into {out_dir} (not writable); choose a folder with --out")


def write_report(evaluation, out_dir, model_path, data_root, bn_train_mode=False):
    """Metrics JSON, per-class CSV, confusion matrix CSV + PNG and the mistakes CSV; returns their paths."""
    import pandas as pd

    from fruitkeras.figures import plot_confusion

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = report_files(out_dir, bn_train_mode)
    metrics = {
        "model": str(model_path),
        "data": str(data_root),
        "images": int(len(evaluation.labels)),
        "accuracy": evaluation.accuracy,
        "loss": evaluation.loss,
        "batch_norm": "batch statistics" if bn_train_mode else "moving statistics",
    }
    # Each file whole or not at all; the metrics, which ``runs`` and the page read, last.
    with replaced_atomically(paths[1]) as temporary:
        evaluation.per_class().to_csv(temporary, index=False, float_format="%.4f")
    names = evaluation.class_names
    with replaced_atomically(paths[2]) as temporary:
        pd.DataFrame(evaluation.confusion, index=pd.Index(names, name="true \\ predicted"),
                     columns=names).to_csv(temporary)
    plot_confusion(evaluation.confusion, names, top_confusions(evaluation.confusion, names, 15),
                   f"test accuracy {evaluation.accuracy:.4f} ({len(evaluation.labels)} images)", paths[3])
    with replaced_atomically(paths[4]) as temporary:
        evaluation.mistakes().to_csv(temporary, index=False, float_format="%.4f")
    write_atomically(paths[0], json.dumps(metrics, indent=2) + "\n")
    return paths
