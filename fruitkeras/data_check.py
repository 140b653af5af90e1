"""``fruitkeras data check``: what to know about a dataset folder before training on it.

Counts per class and split, whether Training has the two classes or more
that training needs and Test the same classes as Training, unreadable files,
exact duplicates (same bytes) within and across splits, and near-duplicates
across splits: Fruits-360's
photos are frames of one rotating fruit, so a Test frame often has a
same-class Training frame that is nearly the same picture.  A Test image
counts as a near-copy when its nearest same-class Training image, both as
32x32 grey thumbnails, differs by less than ``NEAR_GREY_LEVELS`` grey levels
per pixel on average.
"""

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from fruitkeras import data as datalib
from fruitkeras.errors import FruitkerasError

THUMBNAIL = 32
NEAR_GREY_LEVELS = 5.0
DECODE_SIZE = (100, 100)  # images are compared at the dataset's own size, then as thumbnails


def check_dataset(root, near_grey_levels=NEAR_GREY_LEVELS):
    """The findings as a dict (what ``--json`` prints)."""
    root = Path(root)
    if not root.is_dir():
        raise FruitkerasError(f"{root}: no such folder")
    splits = {name: datalib.scan_split(root / name) for name in (datalib.TRAIN_SPLIT, datalib.TEST_SPLIT)
              if (root / name).is_dir()}
    if not splits:
        raise FruitkerasError(f"{root}: neither {datalib.TRAIN_SPLIT}/ nor {datalib.TEST_SPLIT}/ inside")
    findings = {"folder": str(root), "splits": {}, "unreadable": [], "exact_duplicates": {}, "near_duplicates": None}
    thumbnails, hashes = {}, defaultdict(list)
    for name, listed in splits.items():
        decoded = _decode_all(listed)
        findings["splits"][name] = {"images": len(decoded), "classes": dict(zip(
            decoded.class_names, np.bincount(decoded.labels, minlength=len(decoded.class_names)).tolist()))}
        findings["unreadable"] += [{"file": str(path), "reason": reason} for path, reason in decoded.skipped]
        for path in decoded.paths:
            hashes[hashlib.sha256(Path(path).read_bytes()).hexdigest()].append((name, str(path)))
        thumbnails[name] = (decoded, _grey_thumbnails(decoded.images))
    if datalib.TRAIN_SPLIT in findings["splits"] and datalib.TEST_SPLIT in findings["splits"]:
        only_test, only_training = datalib.class_differences(
            list(findings["splits"][datalib.TRAIN_SPLIT]["classes"]), list(findings["splits"][datalib.TEST_SPLIT]["classes"]))
        findings["class_mismatch"] = {"only_in_test": only_test, "only_in_training": only_training}
    else:
        findings["class_mismatch"] = None
    groups = [files for files in hashes.values() if len(files) > 1]
    findings["exact_duplicates"] = {
        "within_splits": sum(1 for files in groups if len({split for split, _ in files}) == 1),
        "across_splits": sum(1 for files in groups if len({split for split, _ in files}) > 1),
        "examples": [[path for _, path in files] for files in groups[:5]],
    }
    if len(thumbnails) == 2:
        findings["near_duplicates"] = _near_duplicates(thumbnails, near_grey_levels)
    findings["checks"] = [{"check": check, "outcome": outcome, "problem": problem}
                          for check, outcome, problem in checks(findings)]
    findings["verdict"] = verdict(findings)
    return findings


def _decode_all(listed):
    """Every readable image at ``DECODE_SIZE``; a class with none readable is kept with zero images."""
    try:
        return datalib.decode_split(listed, DECODE_SIZE)
    except FruitkerasError:  # a class without one readable image: decode the others, report that class's files
        empty = np.zeros((0, *DECODE_SIZE, 3), np.uint8)
        decoded = datalib.Split([], np.zeros(0, np.int32), listed.class_names, list(listed.skipped), empty)
        for label in range(len(listed.class_names)):
            part = listed.subset(listed.labels == label)
            part.skipped = []
            try:
                got = datalib.decode_split(part, DECODE_SIZE)
            except FruitkerasError:
                decoded.skipped += [(Path(path), "unreadable image") for path in part.paths]
                continue
            decoded.paths += got.paths
            decoded.labels = np.concatenate([decoded.labels, np.full(len(got), label, np.int32)])
            decoded.images = np.concatenate([decoded.images, got.images])
            decoded.skipped += got.skipped
        return decoded


def _grey_thumbnails(images):
    """(N, 32*32) float32 grey levels (0-255) of uint8 RGB images."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(image).convert("L").resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR),
                                np.float32).reshape(-1) for image in images]) if len(images) else \
        np.zeros((0, THUMBNAIL * THUMBNAIL), np.float32)


def _near_duplicates(thumbnails, near_grey_levels, chunk=64):
    """Per Test image, the mean absolute grey difference to its nearest same-class Training image."""
    (train, train_thumbs), (test, test_thumbs) = thumbnails[datalib.TRAIN_SPLIT], thumbnails[datalib.TEST_SPLIT]
    nearest = np.full(len(test), np.inf, np.float32)
    for name in test.class_names:
        if name not in train.class_names:
            continue
        test_rows = np.flatnonzero(test.labels == test.class_names.index(name))
        train_rows = np.flatnonzero(train.labels == train.class_names.index(name))
        if not len(train_rows):
            continue
        references = train_thumbs[train_rows]
        for start in range(0, len(test_rows), chunk):
            rows = test_rows[start : start + chunk]
            distances = np.abs(test_thumbs[rows][:, None, :] - references[None]).mean(axis=2)
            nearest[rows] = distances.min(axis=1)
    compared = np.isfinite(nearest)
    near = compared & (nearest < near_grey_levels)
    per_class = {}
    for name in test.class_names:
        rows = test.labels == test.class_names.index(name)
        if (rows & compared).any():
            per_class[name] = round(float(near[rows].sum() / (rows & compared).sum()), 4)
    return {
        "threshold_grey_levels": near_grey_levels,
        "thumbnail": f"{THUMBNAIL}x{THUMBNAIL} grey",
        "test_images_compared": int(compared.sum()),
        "share_of_test_with_a_near_copy_in_training": round(float(near.sum() / max(compared.sum(), 1)), 4),
        "median_nearest_grey_levels": round(float(np.median(nearest[compared])), 2) if compared.any() else None,
        "per_class": per_class,
    }


def checks(findings):
    """[(check, outcome, is a problem)] for every check made, in the report's order."""
    made = []
    training = findings["splits"].get(datalib.TRAIN_SPLIT)
    if training is not None:
        count = len(training["classes"])
        made.append(("classes to train on", f"{count} in {datalib.TRAIN_SPLIT}"
                     + ("" if count >= datalib.MIN_CLASSES else f" (training needs at least {datalib.MIN_CLASSES})"),
                     count < datalib.MIN_CLASSES))
    mismatch = findings["class_mismatch"]
    if mismatch is not None:
        parts = [f"{len(names)} class(es) only in {split}: {', '.join(names[:5])}" + (" ..." if len(names) > 5 else "")
                 for split, names in ((datalib.TEST_SPLIT, mismatch["only_in_test"]),
                                      (datalib.TRAIN_SPLIT, mismatch["only_in_training"])) if names]
        made.append((f"{datalib.TRAIN_SPLIT} and {datalib.TEST_SPLIT} classes", "; ".join(parts) or "the same",
                     bool(parts)))
    unreadable = len(findings["unreadable"])
    made.append(("unreadable files", f"{unreadable}" if unreadable else "none", bool(unreadable)))
    duplicates = findings["exact_duplicates"]
    for key, what in (("within_splits", "exact duplicates within a split"),
                      ("across_splits", "exact duplicates across splits")):
        made.append((what, f"{duplicates[key]}" if duplicates[key] else "none", bool(duplicates[key])))
    near = findings["near_duplicates"]
    made.append(("near-copies across splits", "not checked: one split only" if near is None else
                 f"{near['share_of_test_with_a_near_copy_in_training']:.1%} of Test", False))
    return made


def verdict(findings):
    """One line: problems first, then what to keep in mind."""
    problems = []
    training = findings["splits"].get(datalib.TRAIN_SPLIT)
    if training is not None and len(training["classes"]) < datalib.MIN_CLASSES:
        problems.append(f"{len(training['classes'])} class in {datalib.TRAIN_SPLIT} "
                        f"(training needs at least {datalib.MIN_CLASSES})")
    mismatch = findings["class_mismatch"]
    if mismatch and (mismatch["only_in_test"] or mismatch["only_in_training"]):
        problems.append(f"{datalib.TRAIN_SPLIT} and {datalib.TEST_SPLIT} have different classes "
                        f"({len(mismatch['only_in_test'])} only in {datalib.TEST_SPLIT}, "
                        f"{len(mismatch['only_in_training'])} only in {datalib.TRAIN_SPLIT})")
    if findings["unreadable"]:
        problems.append(f"{len(findings['unreadable'])} unreadable file(s)")
    duplicates = findings["exact_duplicates"]
    if duplicates["across_splits"]:
        problems.append(f"{duplicates['across_splits']} image(s) in both Training and Test (identical bytes)")
    if duplicates["within_splits"]:
        problems.append(f"{duplicates['within_splits']} duplicated image(s) within a split")
    sizes = ", ".join(f"{info['images']:,} {name}" for name, info in findings["splits"].items())
    classes = max(len(info["classes"]) for info in findings["splits"].values())
    line = ("problems: " + "; ".join(problems) if problems else "ok") + f" ({classes} classes, {sizes} images)"
    near = findings["near_duplicates"]
    if near:
        share = near["share_of_test_with_a_near_copy_in_training"]
        line += (f"; {share:.0%} of Test images have a same-class Training image within "
                 f"{near['threshold_grey_levels']:g} grey levels")
        if share >= 0.1:
            line += ": validation carved from Training is optimistic, report Test accuracy"
    return line


def format_report(findings):
    """The human-readable report; the verdict is its last line."""
    lines = [f"dataset {findings['folder']}"]
    for name, info in findings["splits"].items():
        counts = list(info["classes"].values())
        lines.append(f"  {name}: {info['images']:,} images in {len(counts)} classes "
                     f"({min(counts, default=0)} to {max(counts, default=0)} per class)")
    small = sorted((count, name) for info in findings["splits"].values() for name, count in info["classes"].items())[:3]
    if small:
        lines.append("  smallest classes: " + ", ".join(f"{name} ({count})" for count, name in small))
    lines.append("  checks:")
    lines += [f"    {entry['check']}: {entry['outcome']}" + ("  <- problem" if entry["problem"] else "")
              for entry in findings["checks"]]
    for entry in findings["unreadable"][:10]:
        lines.append(f"  unreadable: {entry['file']}: {entry['reason']}")
    for group in findings["exact_duplicates"]["examples"]:
        lines.append("  identical: " + " = ".join(group))
    near = findings["near_duplicates"]
    if near:
        worst = sorted(near["per_class"].items(), key=lambda item: -item[1])[:3]
        lines.append(f"  near-copies: {near['share_of_test_with_a_near_copy_in_training']:.1%} of "
                     f"{near['test_images_compared']:,} Test images (median distance to the nearest same-class "
                     f"Training image {near['median_nearest_grey_levels']} grey levels on {near['thumbnail']} "
                     "thumbnails); most in " + ", ".join(f"{name} ({share:.0%})" for name, share in worst))
    lines.append(findings["verdict"])
    return "\n".join(lines)
