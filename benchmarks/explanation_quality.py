"""Which explanation method is most faithful to the shipped model?  Every method over a fixed,
seeded sample of 77-class Test images (confusable varieties among them): deletion and insertion
AUC, rank correlation with the map of a randomised model (top layer; all layers), seconds per image.

Writes docs/explanation_quality.md (the table), .csv (per image) and .png (the plot).

Usage: python benchmarks/explanation_quality.py --data ../shared/data/fruits-360-77class
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASSES = ("Apple Braeburn", "Apple Granny Smith", "Apple Red Delicious", "Potato Red", "Potato Red Washed",
           "Beetroot", "Tomato 4", "Tomato Maroon", "Eggplant", "Kumquats")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", type=Path, default=Path("runs/fruits77-vgg_small"))
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/explanation_quality"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from an earlier run's .csv")
    args = parser.parse_args()
    if args.plot_only:
        import pandas as pd

        plot(pd.read_csv(args.out.with_suffix(".csv")), args.out.with_suffix(".png"))
        return

    from fruitkeras.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    import numpy as np
    import pandas as pd

    from fruitkeras.data import load_image, natural_key
    from fruitkeras.explain import METHODS
    from fruitkeras.explain.report import ExplainOptions, measure_faithfulness, explain_images
    from fruitkeras.runs import load_model

    model, metadata = load_model(args.model / "model.keras" if args.model.is_dir() else args.model)
    rng = np.random.default_rng(args.seed)
    paths = []
    for name in CLASSES:
        files = sorted((args.data / "Test" / name).iterdir(), key=natural_key)
        paths += [files[i] for i in sorted(rng.choice(len(files), args.per_class, replace=False))]
    images = np.stack([load_image(p, metadata["input_size"]) for p in paths])
    labels = [metadata["class_names"].index(p.parent.name) for p in paths]
    options = ExplainOptions()
    rows = []
    for method in METHODS:
        started = time.perf_counter()
        explained = explain_images(model, metadata, images, paths, [method], options, label=None,
                                   cut_out=False)  # Test photos as they are
        seconds = (time.perf_counter() - started) / len(paths)
        scores = measure_faithfulness(model, metadata, explained, options)[method]
        for path, label, predicted, score in zip(paths, labels, explained.predicted, scores):
            rows.append({"method": method, "image": f"{path.parent.name}/{path.name}", "correct": predicted == label,
                         "deletion_auc": score.deletion, "insertion_auc": score.insertion,
                         "randomised_top_rho": score.correlation_top, "randomised_all_rho": score.correlation_all,
                         "seconds_per_image": seconds})
        print(f"{method}: done, {seconds:.2f} s per image", flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False, float_format="%.4f")
    summary = means(table)
    lines = [f"{len(paths)} Test images, {args.per_class} from each of {len(CLASSES)} classes ({', '.join(CLASSES)}), "
             f"seed {args.seed}; model {args.model}; the explained class is the predicted one "
             f"({table[table.method == 'gradient'].correct.mean():.0%} correct). Means over the images; ties in "
             "deletion and insertion broken at random (seeded); randomised layers lose their batch-norm statistics "
             "too; a rank correlation with a constant map is undefined, left out of the mean and counted.", "",
             "| method | deletion AUC (lower is better) | insertion AUC (higher is better) | rank correlation, top layer randomised | rank correlation, all layers randomised | constant maps, top / all randomised | seconds per image |",
             "|---|---|---|---|---|---|---|"]
    undefined = table.groupby("method", sort=False)[["randomised_top_rho", "randomised_all_rho"]].agg(
        lambda column: int(column.isna().sum()))
    for method, row in summary.iterrows():
        lines.append(f"| {method} | {row.deletion_auc:.3f} | {row.insertion_auc:.3f} | {row.randomised_top_rho:+.2f} "
                     f"| {row.randomised_all_rho:+.2f} | {undefined.loc[method, 'randomised_top_rho']} / "
                     f"{undefined.loc[method, 'randomised_all_rho']} | {row.seconds_per_image:.3f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    plot(table, args.out.with_suffix(".png"))
    print(f"wrote {args.out}.md, .csv and .png")


def means(table):
    return table.groupby("method", sort=False)[["deletion_auc", "insertion_auc", "randomised_top_rho",
                                                "randomised_all_rho", "seconds_per_image"]].mean()


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = means(table)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    axes[0].scatter(summary.deletion_auc, summary.insertion_auc)
    for method, row in summary.iterrows():
        axes[0].annotate(method, (row.deletion_auc, row.insertion_auc), fontsize=9)
    axes[0].set_xlabel("deletion AUC (lower is better)")
    axes[0].set_ylabel("insertion AUC (higher is better)")
    axes[0].set_title("faithfulness: better is up and to the left")
    positions = np.arange(len(summary))
    axes[1].bar(positions - 0.2, summary.randomised_top_rho, 0.4, label="top layer randomised")
    axes[1].bar(positions + 0.2, summary.randomised_all_rho, 0.4, label="all layers randomised")
    axes[1].set_xticks(positions, summary.index, rotation=30)
    axes[1].set_ylabel("rank correlation with the trained map")
    axes[1].set_title("sanity check: near 0 means the map needs the weights")
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
