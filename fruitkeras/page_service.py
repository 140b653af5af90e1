"""What the inspection page shows, made by the functions the commands use.

``Inspection`` holds one loaded model and knows its run folder, the bundled
sample photos and, when given, the Test split.  ``explain`` does the
``explain`` command's work (``explain_paths``) on one image file, into a
folder of the caller's; ``run_report`` reads what ``train`` and ``eval``
wrote into the run folder.  The web page (``webapp``) only lays these out.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from fruitkeras import data as datalib
from fruitkeras.errors import FruitkerasError
from fruitkeras.familiarity import NOT_AVAILABLE, load_beside
from fruitkeras.explain.report import explain_paths, output_name
from fruitkeras.prediction import top_classes
from fruitkeras.run_folder import CONFUSION_CSV, CONFUSION_PNG, CURVES_FILE, HISTORY_FILE, METRICS_FILE, PER_CLASS_FILE, RUN_FILE
from fruitkeras.runs import load_model

# The credited sample photos: inside the package when installed (setup.py's fruitkeras.samples), else the
# checkout's samples/ (an editable install).
_INSTALLED_SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLES_DIR = _INSTALLED_SAMPLES if _INSTALLED_SAMPLES.is_dir() else Path(__file__).resolve().parent.parent / "samples"


@dataclass
class ImageExplanation:
    """One image's prediction and maps, with the files written for them."""

    path: Path
    name: str  # what the user called the file (an upload's own name)
    true_class: str  # None when unknown
    image: object  # uint8 (H, W, 3): what the model saw
    top: list  # [(class, probability)], most probable first
    explained_class: str
    figures: dict  # method -> PNG (photo | heatmap | overlay)
    maps: dict  # method -> .npy of the raw map
    seconds: dict  # method -> seconds to compute the map
    verdict: str = NOT_AVAILABLE  # ``fruitkeras.familiarity``'s verdict
    cut_out: bool = False  # ``image`` is the fruit cut out of the photo, the classes guessed from it
    familiarity: float = None

    @property
    def predicted(self):
        return self.top[0][0]


@dataclass
class RunReport:
    """A run folder's proof of performance, as ``train`` and ``eval`` wrote it (None where a file is absent)."""

    run_dir: Path
    record: dict
    metrics: dict = None
    per_class: object = None  # pandas DataFrame, weakest class first
    history: object = None  # pandas DataFrame, one row per epoch
    confusion_png: Path = None
    confusions: object = None  # pandas DataFrame: the most frequent (true, predicted) mistakes, most first
    curves_png: Path = None


class Inspection:
    """One model, its run folder, the sample photos and (optionally) the Test split."""

    def __init__(self, model_path, data_root=None, samples_dir=SAMPLES_DIR):
        self.model_path = Path(model_path)
        self.model, self.metadata = load_model(self.model_path, familiarity=False)
        # A damaged verdict file costs the page its verdicts ("not available", said at start), not the page.
        self.familiarity_problem = None
        try:
            self.metadata["familiarity"] = load_beside(self.model_path)
        except FruitkerasError as error:
            self.familiarity_problem = str(error)
        self.class_names = self.metadata["class_names"]
        self.samples = {}
        if samples_dir is not None and Path(samples_dir).is_dir():
            self.samples = {path.name: path for path in sorted(Path(samples_dir).iterdir(), key=datalib.natural_key)
                            if path.suffix.lower() in datalib.IMAGE_SUFFIXES}
        self.test_images = {}  # class -> image files of Test/
        if data_root is not None:
            test_dir = Path(data_root) / datalib.TEST_SPLIT
            split = datalib.scan_split(test_dir)
            datalib.check_same_classes(self.class_names, split.class_names, f"model {self.model_path}", str(test_dir))
            for path, label in zip(split.paths, split.labels):
                self.test_images.setdefault(split.class_names[label], []).append(Path(path))
            for paths in self.test_images.values():
                paths.sort(key=datalib.natural_key)

    def sample_class(self, name):
        """The true class of a sample photo, from its file name (``Apple_Braeburn_1.jpg``), if it names one."""
        stem = Path(name).stem.rsplit("_", 1)[0].replace("_", " ")
        return stem if stem in self.class_names else None

    def test_image(self, class_name, file_name):
        for path in self.test_images.get(class_name, []):
            if path.name == file_name:
                return path
        raise FruitkerasError(f"no Test image '{file_name}' in class '{class_name}'")

    def random_test_image(self, rng=random):
        """(path, class) of a Test image drawn uniformly from all of them."""
        if not self.test_images:
            raise FruitkerasError("no Test split: start the page with --data")
        everything = [(path, name) for name, paths in self.test_images.items() for path in paths]
        return rng.choice(everything)

    def explain(self, path, methods, options, out, label=None, name=None, true_class=None):
        """Predict and explain one image file, writing its figures and maps into ``out``."""
        explained, _ = explain_paths(self.model, self.metadata, [Path(path)], methods, options, out, label)
        names = {method: output_name(explained, options, method, 0, Path(path).stem) for method in methods}
        classes, probabilities = top_classes(explained.probabilities[0], self.class_names, 5)
        return ImageExplanation(
            path=Path(path), name=name or Path(path).name, true_class=true_class,
            image=(explained.images[0] * 255).round().astype("uint8"), top=list(zip(classes, probabilities)),
            explained_class=self.class_names[explained.targets[0]],
            figures={method: Path(out) / f"{name}.png" for method, name in names.items()},
            maps={method: Path(out) / f"{name}.npy" for method, name in names.items()},
            seconds=dict(explained.seconds), verdict=explained.verdict(0)[0], familiarity=explained.verdict(0)[1],
            cut_out=bool(explained.cut_out and explained.cut_out[0]))

    def warm_up(self, methods, options, out):
        """Explain a noise image once, so that the first visitor does not wait for TensorFlow's tracing."""
        import numpy as np
        from PIL import Image

        height, width = self.metadata["input_size"]
        noise = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        path = Path(out) / "warm-up.png"
        Image.fromarray(noise).save(path)
        self.explain(path, methods, options, out)

    def run_report(self):
        return read_run_report(self.model_path.parent)


def read_run_report(run_dir):
    """What ``train`` and ``eval`` left in ``run_dir``: the page's Model tab."""
    import pandas as pd

    run_dir = Path(run_dir)

    def read_json(name):
        try:
            return json.loads((run_dir / name).read_text())
        except (OSError, ValueError):
            return None

    report = RunReport(run_dir, read_json(RUN_FILE) or {}, read_json(METRICS_FILE))
    if (run_dir / PER_CLASS_FILE).exists():
        report.per_class = pd.read_csv(run_dir / PER_CLASS_FILE).sort_values(["accuracy", "class"], kind="stable")
    if (run_dir / HISTORY_FILE).exists():
        history = pd.read_csv(run_dir / HISTORY_FILE)
        first = [c for c in ("epoch", "timestamp", "epoch_seconds") if c in history.columns]
        report.history = history[first + [c for c in history.columns if c not in first]]
    if (run_dir / CONFUSION_CSV).exists():
        report.confusions = worst_confusions(pd.read_csv(run_dir / CONFUSION_CSV, index_col=0))
    for attribute, name in (("confusion_png", CONFUSION_PNG), ("curves_png", CURVES_FILE)):
        if (run_dir / name).exists():
            setattr(report, attribute, run_dir / name)
    return report


def worst_confusions(matrix, count=15):
    """The ``count`` most frequent mistakes of a confusion matrix (rows true, columns predicted; the classes in one
    order) as a table: true class, predicted class, photos, share of the true class's Test photos.  The cells are
    ``evaluation.top_confusions``', as the confusion figure's bars are."""
    import pandas as pd

    from fruitkeras.evaluation import top_confusions

    totals = dict(zip(matrix.index, matrix.to_numpy().sum(axis=1)))
    rows = [(true, taken, photos, f"{photos / totals[true]:.1%}")
            for true, taken, photos in top_confusions(matrix.to_numpy(), list(matrix.index), count)]
    return pd.DataFrame(rows, columns=["true class", "taken for", "photos", "share of its class"])
