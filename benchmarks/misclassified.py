"""The README's figure of the most confidently misclassified Test images.

For each of the ``--count`` mistakes that the model was surest of (from the
run's ``test_mistakes.csv``, written by ``fruitkeras eval``), one row: the
photo, then the gradient and occlusion maps for the predicted class and for
the true class, side by side.  Computed with the same functions as
``fruitkeras explain``.

Usage: python benchmarks/misclassified.py runs/fruits77-vgg_small --out docs/explanations/misclassified.png
"""

import argparse
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()

    from fruitkeras.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # each class explained traces the gradient function again: expected here
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from fruitkeras.data import load_image
    from fruitkeras.explain.drawing import COLORMAP
    from fruitkeras.explain.report import ExplainOptions, explain_images
    from fruitkeras.runs import load_model

    model, metadata = load_model(args.run / "model.keras")
    mistakes = pd.read_csv(args.run / "test_mistakes.csv").head(args.count)
    options = ExplainOptions()
    methods = ("gradient", "occlusion")
    figure, axes = plt.subplots(len(mistakes), 5, figsize=(15, 3.2 * len(mistakes)), squeeze=False)
    for row, mistake in zip(axes, mistakes.itertuples()):
        image = load_image(mistake.image, metadata["input_size"])[None]
        maps = {}
        for which, label in (("predicted", mistake.predicted), ("true", mistake.true)):
            explained = explain_images(model, metadata, image, [mistake.image], methods, options, label=label,
                                       cut_out=False)  # Test photos as they are
            for method in methods:
                maps[method, which] = (explained.maps[method][0], explained.base_losses[0])
        row[0].imshow(image[0])
        row[0].set_title(f"{Path(mistake.image).parent.name}/{Path(mistake.image).name}\n"
                         f"true {mistake.true}, predicted {mistake.predicted} ({mistake.probability_predicted:.1%})",
                         fontsize=8)
        for axis, (method, which) in zip(row[1:], [(m, w) for m in methods for w in ("predicted", "true")]):
            heatmap, base = maps[method, which]
            shown = axis.imshow(heatmap, cmap=COLORMAP)
            axis.figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
            label = mistake.predicted if which == "predicted" else mistake.true
            extra = f"\nloss {base:.2f} without a patch" if method == "occlusion" else ""
            axis.set_title(f"{method} for '{label}' ({which}){extra}", fontsize=8)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(f"The {len(mistakes)} most confident mistakes on Test ({args.run.name}); "
                    "gradient |d loss/d pixel| and occlusion loss (10x10 white patch), per class explained",
                    fontsize=10)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
