"""Figures for heatmaps: original | heatmap with colour bar | overlay.

Each map has a reference level, the value that means "no effect" (0 for
gradients and loss changes, the unoccluded loss for plain occlusion maps).
The overlay tints only what lies above it, so an untouched background shows
as the photo itself.  Maps with values on both sides of 0 (``--delta``) get a
diverging colour map centred on 0.
"""

import textwrap

import matplotlib
import numpy as np
from matplotlib.figure import Figure

TITLE_WIDTH = 44  # characters that fit over one panel at fontsize 9
COLORMAP = "inferno"  # perceptually uniform, readable in greyscale print
DIVERGING = "RdBu_r"  # red: the loss rose, blue: it fell
CAPTIONS = {
    "gradient": "|d loss / d pixel|",
    "smoothgrad": "SmoothGrad |d loss / d pixel|",
    "gradxinput": "|gradient x input|",
    "occlusion": "loss with patch centred here",
    "gradcam": "Grad-CAM",
    "integrated": "integrated gradients (red: for the class)",
}


def normalise(heatmap, reference=0.0, top=None):
    """Strength in [0, 1] above ``reference``, for the overlay (0 where nothing changed)."""
    above = np.maximum(np.asarray(heatmap, dtype=np.float64) - reference, 0.0)
    top = float(above.max()) if top is None else top - reference
    return above / top if top > 0 else np.zeros_like(above)


def is_diverging(heatmap, reference=0.0):
    return float(np.min(heatmap)) < reference - 1e-12 and reference == 0.0


def draw_row(axes, image, heatmap, title, caption, reference=0.0, limits=None):
    original, raw, overlay = axes
    original.imshow(image, interpolation="nearest")
    # Wrapped to the panel: a long file name would run into the next panel's title.
    original.set_title("\n".join(textwrap.fill(line, TITLE_WIDTH) for line in title.split("\n")), fontsize=9)
    if is_diverging(heatmap, reference):
        extent = float(np.abs(heatmap).max()) if limits is None else max(abs(limits[0]), abs(limits[1]))
        shown = raw.imshow(heatmap, cmap=DIVERGING, vmin=-extent, vmax=extent, interpolation="nearest")
    else:
        low, high = limits if limits is not None else (None, None)
        shown = raw.imshow(heatmap, cmap=COLORMAP, vmin=low, vmax=high, interpolation="nearest")
    raw.set_title(caption, fontsize=9)
    raw.figure.colorbar(shown, ax=raw, fraction=0.046, pad=0.04)
    # The overlay: the colour map's colour, with opacity growing with the effect.
    strength = normalise(np.abs(heatmap) if is_diverging(heatmap, reference) else heatmap, reference,
                         None if limits is None else limits[1])
    tint = matplotlib.colormaps[COLORMAP](strength)
    tint[..., 3] = 0.75 * strength
    overlay.imshow(image, interpolation="nearest")
    overlay.imshow(tint, interpolation="nearest")
    overlay.set_title("overlay (opacity: effect)", fontsize=9)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])


def explanation_figure(images, heatmaps, titles, method, caption=None, references=None, shared_scale=False):
    """One row per image; returns the matplotlib Figure.

    ``shared_scale``: every row uses one colour scale (the grid's lowest and
    highest values), so rows can be compared by colour.
    """
    caption = caption or CAPTIONS.get(method, method)
    references = references if references is not None else [0.0] * len(images)
    limits = None
    if shared_scale:
        limits = (float(np.min(heatmaps)), float(np.max(heatmaps)))
    # A bare Figure, not pyplot's: no global state, so the web page can draw for two users at once.
    figure = Figure(figsize=(10, 3.3 * len(images)))
    axes = figure.subplots(len(images), 3, squeeze=False)
    for row, image, heatmap, title, reference in zip(axes, images, heatmaps, titles, references):
        draw_row(row, image, heatmap, title, caption, reference, limits)
    if shared_scale:
        figure.suptitle("one colour scale for all rows", fontsize=10)
    figure.tight_layout()
    return figure


def save_figure(figure, path):
    figure.savefig(path, dpi=100)
