"""The figures of a run: its learning curves (``train``) and its confusion matrix (``eval``).

Drawing apart from the work that produces the numbers; nothing here imports the
rest of the package but ``fruitkeras.files``.  Figures are drawn on matplotlib's ``Figure`` (no pyplot):
no global state, safe in the page's threads.
"""

from pathlib import Path

import numpy as np

from fruitkeras.files import replaced_atomically


def plot_learning_curves(history_path, out_path, resumed=()):
    """Write the learning curves of a run's history.csv as a PNG."""
    import pandas as pd

    figure = learning_curves_figure(pd.read_csv(history_path), Path(history_path).parent.name, resumed)
    save_figure(figure, out_path)


def learning_curves_figure(history, name, resumed=()):
    """Loss and accuracy per epoch for training, validation and test; resumes marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = history["epoch"]
    figure = Figure(figsize=(11, 4.2))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("loss", "accuracy")):
        # The training loss is the optimised one (augmented images, label smoothing if any).
        for prefix, label in (("", "training"), ("val_", "validation"), ("test_", "test")):
            if f"{prefix}{metric}" in history:
                axis.plot(epochs, history[f"{prefix}{metric}"], marker="o", markersize=3, label=label)
        for number, resume in enumerate(resumed):
            axis.axvline(resume["after_epoch"] + 0.5, color="grey", linestyle="--", linewidth=1,
                         label="resumed" if number == 0 else None)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # a 2-epoch run has no epoch 1.5
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    # Accuracy on a fixed, readable scale: a zoom to 0.98-1.0 makes 0.9875 look like a collapse.
    lowest = min(float(history[c].min()) for c in history if c.endswith("accuracy"))
    axes[1].set_ylim(min(0.9, np.floor(lowest * 10) / 10), 1.0)
    axes[0].set_yscale("log")
    total = history["epoch_seconds"].sum() if "epoch_seconds" in history else None
    title = name
    if total is not None:
        title += f" ({len(history)} epochs, {total / 60:.1f} min)"
    if "test_accuracy" in history:
        title += f", final test accuracy {history['test_accuracy'].iloc[-1]:.4f}"
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_confusion(matrix, names, pairs, title, out_path):
    """Row-normalised confusion matrix, and beside it ``pairs``, the most frequent confusions as (true,
    predicted, images), as bars (at 77 classes the matrix alone is too fine to read)."""
    from matplotlib.figure import Figure

    side = max(4.0, 0.17 * len(names) + 3) if len(names) > 30 else max(4.0, 0.35 * len(names) + 2)
    figure = Figure(figsize=(side * 1.9, side))
    axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    axis, bars = axes
    # Row-normalised colours, so small classes are as visible as big ones.
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of true class")
    ticks = np.arange(len(names))
    fontsize = 8 if len(names) <= 30 else 6
    axis.set_xticks(ticks, names, rotation=90 if len(names) > 6 else 0, fontsize=fontsize)
    axis.set_yticks(ticks, names, fontsize=fontsize)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(names) <= 30:
        for row, column in np.ndindex(matrix.shape):
            if matrix[row, column]:
                colour = "white" if shares[row, column] > 0.5 else "black"
                axis.text(column, row, str(matrix[row, column]), ha="center", va="center", color=colour, fontsize=8)
    axis.set_title(title)
    if pairs:
        labels = [f"{true} -> {predicted}" for true, predicted, _ in pairs][::-1]
        counts = [count for _, _, count in pairs][::-1]
        bars.barh(np.arange(len(pairs)), counts, color="tab:red")
        bars.set_yticks(np.arange(len(pairs)), labels, fontsize=9)
        for y, count in enumerate(counts):
            bars.text(count, y, f" {count}", va="center", fontsize=9)
        bars.set_xlabel("test images")
        bars.set_title(f"the {len(pairs)} most frequent confusions (true -> predicted)")
    else:
        bars.text(0.5, 0.5, "no confusions", ha="center", va="center")
        bars.set_axis_off()
    figure.tight_layout()
    save_figure(figure, out_path)


def save_figure(figure, out_path):
    """A PNG written whole or not at all (``fruitkeras.files``)."""
    with replaced_atomically(out_path) as temporary:
        figure.savefig(temporary, dpi=100)
