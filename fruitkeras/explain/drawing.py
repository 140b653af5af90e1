"""Figures for heatmaps: original | heatmap with colour bar | overlay.

Each map has a reference level, the value that means "no effect" (0 for
gradients and loss changes, the unoccluded loss for plain occlusion maps).
The overlay tints only what lies above it, so an untouched background shows
as the photo itself.  Maps with values on both sides of 0 (``--delta``) get a
diverging colour map centred on 0.
"""

import functools
import textwrap

import matplotlib
import numpy as np
from matplotlib.figure import Figure

TITLE_WIDTH = 44  # characters that fit over one panel at fontsize 9
COLORMAP = "inferno"  # perceptually uniform, readable in greyscale print
DIVERGING = "RdBu_r"  # red: the loss rose, blue: it fell


OVERLAY_TOP_PERCENTILE = 99.0  # of the values above "no effect": full strength from there up


def normalise(heatmap, reference=0.0, top=None):
    """Strength in [0, 1] above ``reference``, for the overlay (0 where nothing changed).

    Without a shared ``top``, full strength starts at the 99th percentile of the
    values above the reference, not at the maximum: gradient maps are
    heavy-tailed, and a few extreme pixels would leave the rest of the overlay
    nearly transparent.
    """
    above = np.maximum(np.asarray(heatmap, dtype=np.float64) - reference, 0.0)
    if top is None:
        positive = above[above > 0]
        top = float(np.percentile(positive, OVERLAY_TOP_PERCENTILE)) if positive.size else 0.0
    else:
        top = top - reference
    return np.clip(above / top, 0.0, 1.0) if top > 0 else np.zeros_like(above)


@functools.lru_cache(maxsize=1)
def _font_characters():
    """The code points the default font can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap())


def drawable(text):
    """``text`` with the characters the font lacks (CJK, emoji in file names) as '?': no empty boxes in the
    figure, and no "Glyph missing" warning on the terminal."""
    characters = _font_characters()
    return "".join(c if c == "\n" or ord(c) in characters else "?" for c in text)


def is_diverging(heatmap, reference=0.0):
    return float(np.min(heatmap)) < reference - 1e-12 and reference == 0.0


def draw_row(axes, image, heatmap, title, caption, reference=0.0, limits=None):
    original, raw, overlay = axes
    original.imshow(image, interpolation="nearest")
    # Wrapped to the panel: a long file name would run into the next panel's title.
    original.set_title("\n".join(textwrap.fill(line, TITLE_WIDTH) for line in drawable(title).split("\n")),
                       fontsize=9)
    if is_diverging(heatmap, reference):
        extent = float(np.abs(heatmap).max()) if limits is None else max(abs(limits[0]), abs(limits[1]))
        shown = raw.imshow(heatmap, cmap=DIVERGING, vmin=-extent, vmax=extent, interpolation="nearest")
    else:
        low, high = limits if limits is not None else (None, None)
        shown = raw.imshow(heatmap, cmap=COLORMAP, vmin=low, vmax=high, interpolation="nearest")
    raw.set_title(caption, fontsize=9)
    raw.figure.colorbar(shown, ax=raw, fraction=0.046, pad=0.04)
    # The overlay: the map's own colours, with opacity growing with the effect (both signs for a diverging map).
    if is_diverging(heatmap, reference):
        strength = normalise(np.abs(heatmap), 0.0, None if limits is None else max(abs(limits[0]), abs(limits[1])))
        tint = matplotlib.colormaps[DIVERGING](0.5 + 0.5 * np.sign(heatmap) * strength)
    else:
        strength = normalise(heatmap, reference, None if limits is None else limits[1])
        tint = matplotlib.colormaps[COLORMAP](strength)
    tint[..., 3] = 0.75 * strength
    overlay.imshow(image, interpolation="nearest")
    overlay.imshow(tint, interpolation="nearest")
    overlay.set_title("overlay (opacity: effect)", fontsize=9)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])


def explanation_figure(images, heatmaps, titles, caption, references=None, shared_scale=False):
    """One row per image, ``caption`` over each map; returns the matplotlib Figure.

    ``shared_scale``: every row uses one colour scale (the grid's lowest and
    highest values), so rows can be compared by colour.
    """
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
