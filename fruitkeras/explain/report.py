"""The ``explain`` command's work: images in, heatmap files and a summary out.

Computing is the methods' (``METHODS``), drawing is ``drawing``'s; this module
chooses targets, names the files after the options that made them, and
writes them.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fruitkeras.errors import FruitkerasError
from fruitkeras.familiarity import NOT_AVAILABLE
from fruitkeras.explain.drawing import explanation_figure, save_figure
from fruitkeras.explain.gradcam import feature_layer_index
from fruitkeras.explain.fill import parse_fill
from fruitkeras.explain.occlusion import check_geometry
from fruitkeras.explain.registry import METHOD, NAMES, QUANTITY_IN_NAMES, ExplainOptions  # noqa: F401  (ExplainOptions: for callers)
from fruitkeras.explain.class_scores import image_losses
from fruitkeras.prediction import look_closer

def unique_stems(paths):
    """File stems for output names; repeated stems get -2, -3, ..."""
    seen, stems = {}, []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


@dataclass
class Explained:
    """What one call computed: per image the prediction and target, per method the maps."""

    paths: list
    images: np.ndarray
    class_names: list
    predicted: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    base_losses: np.ndarray
    maps: dict  # method -> (N, H, W)
    seconds: dict  # method -> seconds for all images
    verdicts: list = None  # per image (verdict, familiarity) (``fruitkeras.familiarity``)
    cut_out: list = None  # per image: True when ``images`` holds the fruit cut out of the photo

    def verdict(self, index):
        return self.verdicts[index] if self.verdicts else (NOT_AVAILABLE, None)

    def title(self, index):
        guess, target = self.predicted[index], self.targets[index]
        verdict, familiarity = self.verdict(index)
        title = f"{Path(self.paths[index]).name}: {self.class_names[guess]} ({self.probabilities[index, guess]:.1%})"
        title += f" [{verdict}" + ("" if familiarity is None else f", familiarity {familiarity:.2f}") + "]"
        if self.cut_out and self.cut_out[index]:
            title += " (fruit cut out)"
        return f"{title}\nexplaining '{self.class_names[target]}', loss {self.base_losses[index]:.3g}"


def explain_images(model, metadata, images, paths, methods, options, label=None, cut_out=True):
    """Run ``methods`` on float images; returns an ``Explained``.  ``cut_out``: an unfamiliar photo is explained
    from the fruit cut out of it (``paths``: where to read it), as ``predict`` guesses it."""
    classes = metadata["class_names"]
    if label is not None and label not in classes:
        raise FruitkerasError(f"unknown --label '{label}'; the model knows: {', '.join(classes)}")
    try:  # every option is checked before any work, whichever methods run
        arguments = {method: METHOD[method].options(options, metadata.get("mean_colour")) for method in NAMES}
        if "gradcam" in methods:
            feature_layer_index(model, options.layer)
        if "occlusion" in methods:
            check_geometry(options.patch, options.stride, metadata["input_size"])
    except ValueError as error:  # a bad --fill, --baseline, --layer, --patch or --stride
        raise FruitkerasError(str(error)) from None
    # An unfamiliar photo is explained as it is guessed: from the fruit cut out of it (``look_closer``).
    images, probabilities, verdicts, cut = look_closer(model, metadata.get("familiarity"), images, paths, cut_out)
    predicted = probabilities.argmax(axis=1)
    targets = np.full(len(images), classes.index(label)) if label else predicted
    maps, seconds = {}, {}
    for method in methods:
        kwargs = arguments[method]
        started = time.perf_counter()
        maps[method] = METHOD[method].load()(model, images, targets, **kwargs)
        seconds[method] = time.perf_counter() - started
    return Explained(list(paths), images, classes, predicted, probabilities, targets,
                     image_losses(model, images, targets), maps, seconds, verdicts, cut)


def reference_level(method, options, explained, index):
    """The map value that means "no effect": the unoccluded loss for plain occlusion maps, else 0."""
    if METHOD[method].reference(options) == "loss":
        return float(explained.base_losses[index])
    return 0.0


def method_suffix(options, method):
    """The method, the options that shape its map and what it explains (``loss`` or ``logit``), as file names
    carry them."""
    tag = METHOD[method].tag(options)
    quantity = QUANTITY_IN_NAMES[METHOD[method].quantity_for(options)]
    return f"{method}-{tag}-{quantity}" if tag else f"{method}-{quantity}"


def output_name(explained, options, method, index, stem):
    """The file name (without suffix) of one image's map: its stem, the method and options, a chosen class."""
    name = f"{stem}_{method_suffix(options, method)}"
    if explained.targets[index] != explained.predicted[index]:
        name += f"_as-{explained.class_names[explained.targets[index]].replace(' ', '_')}"
    return name


def write_explanations(explained, options, out, shared_scale=False):
    """Figures (.png) and raw maps (.npy) for every image and method; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = unique_stems(explained.paths)
    written = []
    for method, maps in explained.maps.items():
        caption = METHOD[method].caption_for(options)
        references = [reference_level(method, options, explained, i) for i in range(len(maps))]
        for index, stem in enumerate(stems):
            name = output_name(explained, options, method, index, stem)
            np.save(out / f"{name}.npy", maps[index])
            figure = explanation_figure([explained.images[index]], [maps[index]], [explained.title(index)], caption,
                                        references=[references[index]])
            save_figure(figure, out / f"{name}.png")
            written += [out / f"{name}.png", out / f"{name}.npy"]
        if len(maps) > 1:
            titles = [explained.title(i) for i in range(len(maps))]
            figure = explanation_figure(explained.images, maps, titles, caption, references=references,
                                        shared_scale=shared_scale)
            grid_path = out / f"grid_{method_suffix(options, method)}{'_shared' if shared_scale else ''}.png"
            save_figure(figure, grid_path)
            written.append(grid_path)
    return written


def summary_lines(explained):
    """What the terminal shows: each image's prediction and explained class, then each method's time."""
    lines = []
    for index, path in enumerate(explained.paths):
        guess, target = explained.predicted[index], explained.targets[index]
        verdict, familiarity = explained.verdict(index)
        lines.append(f"{path}: predicted {explained.class_names[guess]} ({explained.probabilities[index, guess]:.1%}), "
                     f"verdict: {verdict}" + ("" if familiarity is None else f" (familiarity {familiarity:.3f})")
                     + (", from the fruit cut out of the photo" if explained.cut_out and explained.cut_out[index] else "")
                     + f", explaining '{explained.class_names[target]}'")
    count = len(explained.paths)
    for method, seconds in explained.seconds.items():
        lines.append(f"{method}: {count} image(s) in {seconds:.2f} s ({seconds / count:.3f} s per image)")
    return lines


@dataclass
class Faithfulness:
    """One map's scores: deletion and insertion AUC, rank correlation after randomising the model."""

    deletion: float
    insertion: float
    correlation_top: float  # the top layer with weights re-initialised
    correlation_all: float  # every layer with weights re-initialised (cascading)


def measure_faithfulness(model, metadata, explained, options):
    """{method: [Faithfulness per image]} for every map in ``explained``."""
    from fruitkeras.explain.faithfulness import deletion_insertion, randomisation_correlations

    fill = parse_fill(options.fill, metadata.get("mean_colour"))
    results = {}
    for method, maps in explained.maps.items():
        kwargs = METHOD[method].options(options, metadata.get("mean_colour"))
        kwargs.pop("progress", None)
        kwargs.pop("xla", None)  # re-initialised models: a compilation each would cost more than it saves
        curves = deletion_insertion(model, explained.images, maps, explained.targets, fill=fill)
        correlations = randomisation_correlations(model, METHOD[method].load(), explained.images, explained.targets,
                                                  maps=maps, **kwargs)
        results[method] = [Faithfulness(d, i, top, everything) for (d, i, _, _), top, everything
                           in zip(curves, correlations[1], correlations[None])]
    return results


def faithfulness_lines(explained, results):
    lines = ["faithfulness (deletion AUC: lower is better; insertion AUC: higher is better; rank correlation "
             "with the map after re-initialising the top layer / all layers: lower is better)"]
    for method, scores in results.items():
        for path, score in zip(explained.paths, scores):
            lines.append(f"  {method:<11} {path}: deletion {score.deletion:.3f}  insertion {score.insertion:.3f}  "
                         f"randomised top {correlation_text(score.correlation_top)} / all "
                         f"{correlation_text(score.correlation_all)}")
    return lines


def correlation_text(correlation):
    """A rank correlation as printed; a constant map has none, and that is said, never shown as 0."""
    return "undefined (a constant map)" if np.isnan(correlation) else f"{correlation:+.2f}"


def explain_paths(model, metadata, paths, methods, options, out, label=None, shared_scale=False, cut_out=True):
    """Load image files, explain them and write the figures and maps: the CLI's and the web page's work.

    Returns (``Explained``, paths written); unreadable files are reported on
    stderr and left out, as ``load_images`` does.
    """
    from fruitkeras.image_files import load_images

    images, kept = load_images(paths, metadata["input_size"])
    explained = explain_images(model, metadata, images, kept, methods, options, label, cut_out)
    return explained, write_explanations(explained, options, out, shared_scale)


def explain_files(model_path, inputs, methods, options, out, label=None, shared_scale=False, echo=print,
                  metrics=False, cut_out=True):
    """The ``explain`` command: collect the images, explain, write, report."""
    from fruitkeras.image_files import collect_images
    from fruitkeras.runs import load_model

    paths = collect_images(inputs)
    model, metadata = load_model(model_path)
    explained, written = explain_paths(model, metadata, paths, methods, options, out, label, shared_scale, cut_out)
    echo(f"model: {model_path}")
    for line in summary_lines(explained):
        echo(line)
    if metrics:
        for line in faithfulness_lines(explained, measure_faithfulness(model, metadata, explained, options)):
            echo(line)
    echo(f"wrote {len(written)} file(s) to {out}/")
    return explained, written
