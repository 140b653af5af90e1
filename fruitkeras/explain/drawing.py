"""Figures for heatmaps: original | heatmap with colour bar | overlay."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORMAP = "inferno"  # perceptually uniform, readable in greyscale print
CAPTIONS = {
    "gradient": "|d loss / d pixel|",
    "smoothgrad": "SmoothGrad |d loss / d pixel|",
    "gradxinput": "|gradient x input|",
    "occlusion": "loss with patch centred here",
}


def normalise(heatmap):
    """Scale to [0, 1] for the overlay (a constant map becomes zeros)."""
    low, high = float(heatmap.min()), float(heatmap.max())
    return (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)


def draw_row(axes, image, heatmap, title, caption):
    original, raw, overlay = axes
    original.imshow(image, interpolation="nearest")
    original.set_title(title, fontsize=9)
    shown = raw.imshow(heatmap, cmap=COLORMAP, interpolation="nearest")
    raw.set_title(caption, fontsize=9)
    raw.figure.colorbar(shown, ax=raw, fraction=0.046, pad=0.04)
    overlay.imshow(image, interpolation="nearest")
    overlay.imshow(normalise(heatmap), cmap=COLORMAP, alpha=0.55, vmin=0, vmax=1, interpolation="nearest")
    overlay.set_title("overlay", fontsize=9)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])


def explanation_figure(images, heatmaps, titles, method, caption=None):
    """One row per image; returns the matplotlib Figure."""
    caption = caption or CAPTIONS.get(method, method)
    figure, axes = plt.subplots(len(images), 3, figsize=(10, 3.3 * len(images)), squeeze=False)
    for row, image, heatmap, title in zip(axes, images, heatmaps, titles):
        draw_row(row, image, heatmap, title, caption)
    figure.tight_layout()
    return figure


def save_figure(figure, path):
    figure.savefig(path, dpi=100)
    plt.close(figure)
