"""Which occlusion fill value? Measured on a trained model and real test photos.

For each candidate fill, on a sample of test images: the mean loss increase
when the whole fruit is painted over with the fill, and when the whole
background is.  A good fill removes the fruit's evidence (large first number)
and adds nothing where there was no evidence (second number near zero), so
that an occlusion map lights up on the fruit and not on the background.
Fruit pixels are those whose darkest channel is below --threshold.

The last column looks at the maps themselves (patch --patch, every --stride
pixels, on --map-images of the images): of all loss increase in the maps,
the share found at positions whose patch covers background only.

    python benchmarks/occlusion_fill.py --data ../shared/data/fruits-360-77class [--model runs/fruits77-vgg_small]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from fruitkeras import data as datalib  # noqa: E402
from fruitkeras.explain.fill import parse_fill  # noqa: E402
from fruitkeras.explain.occlusion import occlusion, positions_touching  # noqa: E402
from fruitkeras.explain.class_scores import image_losses  # noqa: E402
from fruitkeras.runs import load_model  # noqa: E402

CANDIDATES = ("white", "mean", "grey", "black")


def fruit_masks(images, threshold):
    """True where a pixel is part of the fruit (not the near-white background)."""
    return images.min(axis=-1) < threshold


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (default: --data rules of fruitkeras)")
    parser.add_argument("--model", type=Path, default=Path("runs/fruits77-vgg_small"))
    parser.add_argument("--per-class", type=int, default=2, help="test images per class")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--patch", type=int, default=10)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--map-images", type=int, default=20)
    args = parser.parse_args()

    model_path = args.model / "model.keras" if args.model.is_dir() else args.model
    model, metadata = load_model(model_path)
    split = datalib.scan_split(datalib.resolve_data_dir(args.data) / datalib.TEST_SPLIT, args.per_class, seed=1)
    images = np.stack([datalib.load_image(path, metadata["input_size"]) for path in split.paths])
    labels = np.asarray([metadata["class_names"].index(split.class_names[i]) for i in split.labels])
    masks = fruit_masks(images, args.threshold)[..., None]
    base = image_losses(model, images, labels)

    print(f"model {model_path}, {len(images)} test images ({args.per_class} per class), "
          f"fruit = darkest channel < {args.threshold} ({masks.mean():.0%} of pixels); base loss {base.mean():.4f}")
    print()
    mapped = np.linspace(0, len(images) - 1, min(args.map_images, len(images))).astype(int)
    background_only = np.stack([~positions_touching(mask[..., 0], args.patch) for mask in masks[mapped]])
    print(f"| fill | colour (RGB, 0-1) | mean loss increase, fruit occluded | mean loss increase, background occluded "
          f"| share of map increase on background-only positions ({len(mapped)} images) |")
    print("|---|---|---|---|---|")
    for name in CANDIDATES:
        fill = parse_fill(name, metadata.get("mean_colour"))
        fruit_hidden = np.where(masks, fill, images)
        background_hidden = np.where(masks, images, fill)
        fruit_gain = (image_losses(model, fruit_hidden, labels) - base).mean()
        background_gain = (image_losses(model, background_hidden, labels) - base).mean()
        maps = occlusion(model, images[mapped], labels[mapped], patch=args.patch, stride=args.stride, fill=fill)
        increase = np.maximum(maps - base[mapped, None, None], 0)
        share = increase[background_only].sum() / max(increase.sum(), 1e-30)
        colour = ", ".join(f"{v:.2f}" for v in fill)
        default = " (default)" if name == "white" else ""
        print(f"| {name}{default} | {colour} | {fruit_gain:.3f} | {background_gain:.5f} | {share:.1%} |")


if __name__ == "__main__":
    main()
