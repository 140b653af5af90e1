"""Comparing runs: their learning curves overlaid, and a table of results and differences.

For each run folder: ``history.csv`` (per-epoch metrics with timestamps),
``run.json`` (start time, parameters) and ``architecture.json`` (what the run
was trained with).  ``compare_runs`` writes ``comparison.png`` (the metric and
its loss against epoch and against wall-clock minutes), ``comparison.csv``
and ``comparison.md``.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from fruitkeras.errors import FruitkerasError
from fruitkeras.run_folder import ARCHITECTURE_COPY, HISTORY_FILE, RUN_FILE

TABLE_FILES = ("comparison.csv", "comparison.md", "comparison.png")


@dataclass
class RunRecord:
    name: str
    history: object  # pandas DataFrame
    record: dict
    architecture: dict

    @property
    def minutes(self):
        """Wall-clock minutes from the run's start to each epoch's end (from the timestamps)."""
        started = datetime.fromisoformat(self.record["started"])
        return np.asarray([(datetime.fromisoformat(t) - started).total_seconds() / 60 for t in self.history["timestamp"]])


def read_run(folder):
    import pandas as pd

    folder = Path(folder)
    try:
        history = pd.read_csv(folder / HISTORY_FILE)
        record = json.loads((folder / RUN_FILE).read_text())
        architecture = json.loads((folder / ARCHITECTURE_COPY).read_text())
    except FileNotFoundError as error:
        raise FruitkerasError(f"{folder}: not a run folder ({Path(error.filename).name} missing)") from None
    except (ValueError, pd.errors.ParserError) as error:
        raise FruitkerasError(f"{folder}: unreadable run files ({str(error).splitlines()[0]})") from None
    if history.empty:
        raise FruitkerasError(f"{folder}: no finished epoch in history.csv")
    return RunRecord(folder.name, history, record, architecture)


def _flatten(value, prefix=""):
    """{"training.learning_rate": 0.002, "layers.3.filters": 64, ...} of a JSON object."""
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(_flatten(inner, f"{prefix}{key}."))
        return items
    if isinstance(value, list):
        items = {f"{prefix}count": len(value)}
        for index, inner in enumerate(value, start=1):
            items.update(_flatten(inner, f"{prefix}{index}."))
        return items
    return {prefix.rstrip("."): value}


# What run.json adds to a run's settings: data, classes and the command line's overrides.
RUN_SETTINGS = {
    "data": lambda record: record.get("data"),
    "classes": lambda record: len(record.get("class_names", [])),
    "epochs": lambda record: record.get("epochs"),
    "limit_per_class": lambda record: record.get("limit_per_class"),
    "seed": lambda record: record.get("seed"),
}


def run_settings(run):
    """A run's architecture file as it trained (its ``--set`` overrides applied) with its run.json's data folder,
    class count, epochs, sample limit and seed under ``run``: what ``differences`` compares."""
    from fruitkeras.architecture import overridden_json

    trained = overridden_json(run.architecture, run.record.get("overrides"))
    return {**trained, "run": {name: read(run.record) for name, read in RUN_SETTINGS.items()}}


def differences(architectures):
    """Per architecture (with ``run_settings``' additions), where it departs from the others ('field=value; ...').

    For each setting that is not the same everywhere, the reference is its
    most common value (in a study: the baseline's; a tie goes to the first
    run), and each architecture lists the settings where it has another.
    Layer lists are aligned by layer type, so a removed or added layer reads
    as such ('layers: -5 batchnorm') and the layers after it are compared
    with their counterparts, not with whatever took their place.
    """
    from collections import Counter

    flat = [{k: json.dumps(v) for k, v in _flatten(a).items() if k not in ("name", "description")
             and not k.startswith("layers.")} for a in architectures]
    keys = sorted(set().union(*flat))
    reference = {}
    for key in keys:
        values = [f.get(key, "absent") for f in flat]
        counts = Counter(values)
        top = max(counts.values())
        reference[key] = next(v for v in values if counts[v] == top)
    layer_lists = [a.get("layers", []) for a in architectures]
    counts = Counter(json.dumps(layers, sort_keys=True) for layers in layer_lists)
    reference_layers = next(layers for layers in layer_lists if counts[json.dumps(layers, sort_keys=True)] == max(counts.values()))
    return ["; ".join(_layer_changes(reference_layers, layers)
                      + [f"{k}={f.get(k, 'absent')}" for k in keys if f.get(k, "absent") != reference[k]])
            for f, layers in zip(flat, layer_lists)]


def _layer_changes(reference, layers):
    """What ``layers`` changes against ``reference``: layers removed or added (by type), then changed fields."""
    import difflib
    from collections import Counter

    matcher = difflib.SequenceMatcher(a=[layer.get("type") for layer in reference],
                                      b=[layer.get("type") for layer in layers], autojunk=False)
    removed, added, fields = Counter(), Counter(), []
    for tag, start, end, other_start, other_end in matcher.get_opcodes():
        if tag == "equal":
            for old, new, number in zip(reference[start:end], layers[other_start:other_end],
                                        range(other_start + 1, other_end + 1)):
                fields += [f"layers.{number}.{key}={json.dumps(new.get(key)) if key in new else 'absent'}"
                           for key in sorted(set(old) | set(new)) if old.get(key, "absent") != new.get(key, "absent")]
        else:
            removed.update(layer.get("type") for layer in reference[start:end])
            added.update(layer.get("type") for layer in layers[other_start:other_end])
    summary = [f"-{count} {kind}" for kind, count in sorted(removed.items())]
    summary += [f"+{count} {kind}" for kind, count in sorted(added.items())]
    return ([f"layers: {', '.join(summary)}"] if summary else []) + fields


def comparison_table(runs, metric):
    import pandas as pd

    rows = []
    for run, differs in zip(runs, differences([run_settings(r) for r in runs])):
        values = run.history[metric]
        best = int(values.idxmax()) if not metric.endswith("loss") else int(values.idxmin())
        rows.append({
            "run": run.name,
            f"final {metric}": float(values.iloc[-1]),
            f"best {metric}": float(values.iloc[best]),
            "epoch of best": int(run.history["epoch"].iloc[best]),
            "epochs": len(run.history),
            "minutes": round(float(run.minutes[-1]), 1),
            "parameters": run.record.get("parameters"),
            "differs": differs or "-",
        })
    return pd.DataFrame(rows)


def _markdown(table):
    header = "| " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        cells = [f"{v:.4f}" if isinstance(v, float) and name != "minutes" else str(v)
                 for name, v in zip(table.columns, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(runs, metric, path):
    comparison_figure(runs, metric).savefig(path, dpi=100)


def comparison_figure(runs, metric):
    """The metric and its loss against epoch and against minutes; many runs stay apart by colour and a side legend."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    loss = metric.rsplit("_", 1)[0] + "_loss" if not metric.endswith("loss") else metric
    shown = [m for m in dict.fromkeys((metric, loss)) if all(m in r.history for r in runs)]
    colours = colormaps["tab10" if len(runs) <= 10 else "tab20"]
    figure = Figure(figsize=(13, 4 * len(shown)))
    axes = figure.subplots(len(shown), 2, squeeze=False)
    for row, name in zip(axes, shown):
        for index, run in enumerate(runs):
            colour = colours(index % colours.N)
            style = "-" if index < colours.N else "--"  # beyond the palette, dashes keep runs apart
            row[0].plot(run.history["epoch"], run.history[name], style, color=colour, marker="o", markersize=2,
                        label=run.name)
            row[1].plot(run.minutes, run.history[name], style, color=colour, marker="o", markersize=2)
        row[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        for axis, x_label in zip(row, ("epoch", "wall-clock minutes")):
            axis.set_xlabel(x_label)
            axis.set_ylabel(name)
            axis.grid(alpha=0.3)
            if name.endswith("accuracy"):  # every run's every value stays in view
                values = np.concatenate([r.history[name].to_numpy() for r in runs])
                low, top = float(np.nanmin(values)), float(np.nanmax(values))
                axis.set_ylim(max(0.0, min(low, top - 0.01) - 0.005), min(1.0, top + 0.005) + 0.001)
            else:
                axis.set_yscale("log")
    axes[0][0].figure.legend(*axes[0][0].get_legend_handles_labels(), loc="center right", fontsize=8,
                             ncol=1 if len(runs) <= 20 else 2)
    figure.suptitle(f"{len(runs)} runs: {metric}")
    figure.tight_layout(rect=(0, 0, 0.8 if len(runs) <= 20 else 0.7, 1))
    return figure


def compare_runs(folders, metric="test_accuracy", out="comparison"):
    """Read the runs, write the plot and the tables into ``out``; returns the table (a DataFrame)."""
    runs = [read_run(folder) for folder in folders]
    names = [run.name for run in runs]
    if len(set(names)) < len(names):  # two folders of one name from different places
        for run, folder in zip(runs, folders):
            run.name = str(folder)
    missing = [run.name for run in runs if metric not in run.history]
    if missing:
        shared = set.intersection(*(set(run.history.columns) for run in runs))  # what every run can compare
        available = sorted(shared - {"epoch", "timestamp", "epoch_seconds"})
        raise FruitkerasError(f"metric '{metric}' not in the history of {', '.join(missing)}; "
                              f"available: {', '.join(available)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(runs, metric)
    table.to_csv(out / TABLE_FILES[0], index=False, float_format="%.4f")
    (out / TABLE_FILES[1]).write_text(_markdown(table))
    plot_comparison(runs, metric, out / TABLE_FILES[2])
    return table
