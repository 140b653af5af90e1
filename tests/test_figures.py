"""What the figures show: learning curves, heatmap colours and overlays; help texts."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fruitkeras.cli import main
from fruitkeras.explain.drawing import DIVERGING, explanation_figure
from fruitkeras.figures import learning_curves_figure


def history(accuracies):
    count = len(accuracies)
    return pd.DataFrame({"epoch": range(1, count + 1), "loss": np.linspace(1, 0.1, count), "accuracy": accuracies,
                         "val_loss": np.linspace(1, 0.2, count), "val_accuracy": accuracies,
                         "test_loss": np.linspace(1, 0.3, count), "test_accuracy": accuracies,
                         "epoch_seconds": [30.0] * count})


def test_accuracy_axis_does_not_zoom_a_small_dip_into_a_collapse():
    figure = learning_curves_figure(history([0.985, 0.99, 0.9875, 0.991]), "run")
    low, high = figure.axes[1].get_ylim()
    assert low <= 0.9 and high == 1.0
    labels = [line.get_label() for line in figure.axes[1].get_lines()]
    assert labels == ["training", "validation", "test"]
    plt.close(figure)


def test_resumes_are_marked_on_the_curves():
    figure = learning_curves_figure(history([0.5, 0.7, 0.8, 0.9]), "run", resumed=[{"after_epoch": 2, "at": "x"}])
    marks = [line for line in figure.axes[0].get_lines() if line.get_label() == "resumed"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [2.5, 2.5]
    plt.close(figure)


def test_delta_maps_get_a_diverging_colour_map_centred_on_zero():
    change = np.zeros((6, 6))
    change[1, 1], change[4, 4] = 0.5, -0.2
    figure = explanation_figure([np.ones((6, 6, 3))], [change], ["t"], "occlusion")
    raw = figure.axes[1].get_images()[0]
    assert raw.get_cmap().name == DIVERGING
    low, high = raw.get_clim()
    assert low == pytest.approx(-0.5) and high == pytest.approx(0.5)
    plt.close(figure)


def test_overlay_leaves_no_change_untinted():
    """An occlusion loss map is at the unoccluded loss wherever the patch hid background:
    that level must not tint the photo."""
    base = 0.3
    losses = np.full((6, 6), base)
    losses[2:4, 2:4] = 1.3
    figure = explanation_figure([np.ones((6, 6, 3))], [losses], ["t"], "occlusion", references=[base])
    overlay = next(axis for axis in figure.axes if axis.get_title().startswith("overlay"))
    tint = overlay.get_images()[1].get_array()  # the tint drawn over the photo
    alpha = np.asarray(tint)[..., 3]
    assert (alpha[losses == base] == 0).all() and (alpha[2:4, 2:4] > 0.5).all()
    plt.close(figure)


def test_shared_scale_gives_every_row_the_same_limits():
    maps = [np.linspace(0, 1, 36).reshape(6, 6), np.linspace(0, 5, 36).reshape(6, 6)]
    images = [np.ones((6, 6, 3))] * 2
    shared = explanation_figure(images, maps, ["a", "b"], "gradient", shared_scale=True)
    limits = [image.get_clim() for axis in shared.axes for image in axis.get_images() if image.get_cmap().name == "inferno"
              and image.get_array().ndim == 2]
    assert limits == [(0.0, 5.0), (0.0, 5.0)]
    separate = explanation_figure(images, maps, ["a", "b"], "gradient")
    limits = [image.get_clim() for axis in separate.axes for image in axis.get_images() if image.get_cmap().name == "inferno"
              and image.get_array().ndim == 2]
    assert limits == [(0.0, 1.0), (0.0, 5.0)]
    plt.close("all")


def test_every_option_of_every_command_has_help_text():
    for name, command in main.commands.items():
        for parameter in command.params:
            if parameter.param_type_name == "option":
                assert parameter.help, f"fruitkeras {name} {parameter.opts[0]} has no help text"


def overlay_pixels(figure):
    """The RGBA of the overlay panel's tint layer (the third panel's second image)."""
    return np.asarray(figure.axes[2].get_images()[1].get_array())


def test_a_signed_map_is_overlaid_in_its_own_red_and_blue():
    """Integrated Gradients' map is red (for the class) and blue (against); its overlay too, not another colour map."""
    image = np.ones((20, 20, 3), np.float32)
    heatmap = np.zeros((20, 20), np.float32)
    heatmap[2:6, 2:6], heatmap[12:16, 12:16] = 1.0, -1.0
    tint = overlay_pixels(explanation_figure([image], [heatmap], ["t"], "integrated"))
    red, blue = tint[3, 3], tint[13, 13]
    assert red[0] > 2 * red[2] and blue[2] > 2 * blue[0]
    assert red[3] > 0.5 and blue[3] > 0.5 and tint[10, 0, 3] == 0  # zero effect stays transparent


def test_a_few_extreme_pixels_do_not_wash_out_the_overlay():
    """Gradient maps are heavy-tailed: full strength starts at the 99th percentile, not at the maximum."""
    rng = np.random.default_rng(0)
    heatmap = rng.exponential(1.0, size=(50, 50)).astype(np.float32)
    heatmap[0, 0] = 1000.0  # one extreme pixel
    tint = overlay_pixels(explanation_figure([np.ones((50, 50, 3), np.float32)], [heatmap], ["t"], "gradient"))
    assert np.median(tint[..., 3]) > 0.1  # the bulk of the map is visible
    assert np.isclose(tint[..., 3].max(), 0.75)


def test_file_names_the_font_cannot_draw_give_no_boxes_and_no_warnings(tmp_path):
    import warnings

    from fruitkeras.explain.drawing import save_figure

    title = "苹果🍎_1.jpg: Apple (99.0%)\nexplaining 'Äpfel'"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "Glyph missing" warning would fail here
        figure = explanation_figure([np.ones((8, 8, 3), np.float32)], [np.eye(8, dtype=np.float32)], [title], "gradient")
        save_figure(figure, tmp_path / "figure.png")
    shown = figure.axes[0].get_title()
    assert shown.startswith("???_1.jpg: Apple (99.0%)") and "'Äpfel'" in shown
