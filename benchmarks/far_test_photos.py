"""Test accuracy on the Test photos farthest from every Training frame, against the whole of Test.

Fruits-360 films each fruit turning, so most Test photos have a near twin among
the Training frames.  This measures the share of Test that has none: each Test
photo's distance to its nearest Training frame (pixels at 32x32, Euclidean),
then the accuracy of each run on the farthest ``--share`` of Test.  The shipped
run is measured in the same process as the peer; the printed ratio is the worst
listed run's error rate on the far photos over the shipped run's.  ``--tta SET``
(repeatable) also gives each run's accuracy with test-time augmentation: each
photo's class probabilities averaged over the right-angle orientations of SET
(``ORIENTATION_SETS``), which no command uses.

Usage:
    python benchmarks/far_test_photos.py --data ../shared/data/fruits-360-77class \
        --run runs/fruits77-vgg_small --run /tmp/tta/live-148 [--run ...] [--share 0.1] [--tta mirror --tta eight]
"""

import argparse
from pathlib import Path

import numpy as np

SHIPPED = Path(__file__).resolve().parent.parent / "runs" / "fruits77-vgg_small"
DISTANCE_SIZE = (32, 32)


def pixels(data, split_name):
    from fruitkeras import data as datalib
    from fruitkeras.decoded_cache import decode_cached

    split = decode_cached(datalib.scan_split(Path(data) / split_name), DISTANCE_SIZE, quiet=True)
    return split, split.images.reshape(len(split), -1).astype(np.float32) / 255.0


def nearest_training_distances(training, test, chunk=1024):
    """Each Test row's Euclidean distance to its nearest Training row."""
    training_norms = (training**2).sum(axis=1)
    found = np.empty(len(test), np.float32)
    for start in range(0, len(test), chunk):
        rows = test[start : start + chunk]
        squared = (rows**2).sum(axis=1)[:, None] + training_norms[None] - 2.0 * rows @ training.T
        found[start : start + chunk] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return found


# The eight right-angle orientations of (N, height, width, channels) images, and the sets averaged by --tta.
ORIENTATIONS = {
    "photo": lambda images: images,
    "mirror": lambda images: images[:, :, ::-1],
    "upside-down": lambda images: images[:, ::-1],
    "half-turn": lambda images: images[:, ::-1, ::-1],
    "swapped": lambda images: images.transpose(0, 2, 1, 3),
    "swapped-mirror": lambda images: images.transpose(0, 2, 1, 3)[:, :, ::-1],
    "swapped-upside-down": lambda images: images.transpose(0, 2, 1, 3)[:, ::-1],
    "swapped-half-turn": lambda images: images.transpose(0, 2, 1, 3)[:, ::-1, ::-1],
}
ORIENTATION_SETS = {
    "mirror": ("photo", "mirror"),
    "swapped": ("photo", "swapped"),
    "half-turn": ("photo", "half-turn"),
    "four": ("photo", "mirror", "upside-down", "half-turn"),
    "eight": tuple(ORIENTATIONS),
}


def read_test_photos(metadata, data, paths):
    """The Test photos at the model's input size, uint8, in the order of ``paths``."""
    from fruitkeras import data as datalib
    from fruitkeras.decoded_cache import decode_cached

    split = decode_cached(datalib.scan_split(Path(data) / datalib.TEST_SPLIT), tuple(metadata["input_size"]),
                          quiet=True)
    row = {path: number for number, path in enumerate(split.paths)}
    return split.images[[row[path] for path in paths]]


def oriented_probabilities(model, images, orientation):
    """Class probabilities of uint8 ``images`` turned to one of ``ORIENTATIONS``."""
    from fruitkeras import data as datalib
    from fruitkeras.forward import class_probabilities

    turned = np.ascontiguousarray(ORIENTATIONS[orientation](images))
    return class_probabilities(model, turned * np.float32(datalib.PIXEL_SCALE), batch_size=256)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--run", action="append", type=Path, default=[], help="run folders to measure")
    parser.add_argument("--share", type=float, default=0.1, help="the farthest share of Test (0.1: a tenth)")
    parser.add_argument("--tta", action="append", choices=sorted(ORIENTATION_SETS), default=[],
                        help="also with test-time augmentation over this set of orientations (repeatable)")
    args = parser.parse_args()

    from fruitkeras.evaluation import evaluate
    from fruitkeras.runs import load_model

    _, training = pixels(args.data, "Training")
    test_split, test = pixels(args.data, "Test")
    distances = nearest_training_distances(training, test)
    cut = np.quantile(distances, 1.0 - args.share)
    far = {path for path, distance in zip(test_split.paths, distances) if distance >= cut}
    print(f"Test photos: {len(test_split)}; nearest Training frame at 32x32: median {np.median(distances):.2f}, "
          f"the farthest {args.share:.0%} ({len(far)} photos) at >= {cut:.2f}")

    errors = {}
    averaged = "".join(f" with {name} | on the far photos, with {name} |" for name in args.tta)
    print(f"| run | Test accuracy | on the far photos |{averaged}\n|---|---:|---:|" + "---:|---:|" * len(args.tta))
    for run in [SHIPPED, *args.run]:
        model, metadata = load_model(run / "model.keras", familiarity=False)
        result = evaluate(model, metadata, args.data)
        right = result.predictions == result.labels
        on_far = np.array([path in far for path in result.paths])
        errors[run] = 1.0 - right[on_far].mean()
        row = f"| {run.name} | {right.mean():.4f} | {right[on_far].mean():.4f} |"
        oriented = {"photo": result.probabilities}  # each orientation computed once, whatever sets share it
        images = read_test_photos(metadata, args.data, result.paths) if args.tta else None  # read once per run
        for name in args.tta:
            for orientation in ORIENTATION_SETS[name]:
                if orientation not in oriented:
                    oriented[orientation] = oriented_probabilities(model, images, orientation)
            probabilities = np.mean([oriented[orientation] for orientation in ORIENTATION_SETS[name]], axis=0)
            right = probabilities.argmax(axis=1) == result.labels
            row += f" {right.mean():.4f} | {right[on_far].mean():.4f} |"
        print(row, flush=True)
    if args.run:
        worst = max(args.run, key=errors.get)
        print(f"worst listed run on the far photos: {worst.name}, error {errors[worst]:.4f}; shipped "
              f"{errors[SHIPPED]:.4f}; ratio {errors[worst] / max(errors[SHIPPED], 1e-9):.2f} (lower is better)")


if __name__ == "__main__":
    main()
