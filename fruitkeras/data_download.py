"""``fruitkeras data download``: a Fruits-360 release archive into a dataset folder, in one command.

The archive is fetched by ``keras.utils.get_file`` (its cache, its progress
bar; a download cut short leaves nothing in the cache, and the same command
fetches it again).  Only ``Training/`` and ``Test/`` of the chosen classes are
extracted, wherever they sit in the archive, into a temporary folder beside
``--out`` that is renamed to ``--out`` once everything is in: an interrupted or
failed extraction never leaves a folder that looks complete.
"""

import json
import os
import shutil
import zipfile
from datetime import datetime
from pathlib import Path, PurePosixPath

from fruitkeras.data import IMAGE_SUFFIXES, TEST_SPLIT, TRAIN_SPLIT
from fruitkeras.errors import FruitkerasError

# The official Fruits-360 repository of the 100x100 images (the dataset's GitHub organisation);
# address checked on 2026-11-25 (its README then gave version 2025.03.09.0).
DEFAULT_URL = "https://github.com/fruits-360/fruits-360-100x100/archive/refs/heads/main.zip"
BENCHMARK_FILE = Path(__file__).with_name("benchmark_classes.txt")
SOURCE_FILE = "SOURCE.json"  # what was downloaded, from where, when, with which names


def benchmark_classes():
    """The 77 benchmark classes, as the 2019-2022 releases name them."""
    return [line.strip() for line in BENCHMARK_FILE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def read_class_list(choice):
    """``benchmark``, ``all`` (None) or a file with one class name per line (``#`` starts a comment)."""
    if choice in (None, "all"):
        return None
    if choice == "benchmark":
        return benchmark_classes()
    path = Path(choice)
    try:
        names = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as error:
        raise FruitkerasError(f"--classes {choice}: not 'benchmark', 'all' or a readable file ({error.strerror})") from None
    names = [name for name in names if name]
    if not names:
        raise FruitkerasError(f"--classes {choice}: the file names no class")
    return names


def split_root(members):
    """The folder inside the archive that holds ``Training/`` and ``Test/`` (shallowest first)."""
    found = {}
    for member in members:
        parts = PurePosixPath(member).parts
        for depth, part in enumerate(parts[:-2]):
            if part in (TRAIN_SPLIT, TEST_SPLIT):
                found.setdefault(parts[:depth], set()).add(part)
                break
    complete = sorted((root for root, splits in found.items() if splits == {TRAIN_SPLIT, TEST_SPLIT}), key=len)
    if not complete:
        raise FruitkerasError("the archive holds no Training/ and Test/ folders of class folders; is it a "
                              "Fruits-360 release of the 100x100 images?")
    return complete[0]


def match_classes(wanted, available):
    """{archive class: our name} for the wanted classes.

    A name matches itself, or the same name with " 1" added, as releases from
    2023 on spell the classes that had no number ("Apple Braeburn" is "Apple
    Braeburn 1" there).  Classes found under neither name are an error that
    names them.
    """
    if wanted is None:
        return {name: name for name in sorted(available)}
    chosen, missing = {}, []
    for name in wanted:
        for candidate in (name, f"{name} 1"):
            if candidate in available:
                chosen[candidate] = name
                break
        else:
            missing.append(name)
    if missing:
        raise FruitkerasError(
            f"{len(missing)} of {len(wanted)} classes are not in this archive: {', '.join(missing[:8])}"
            + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            + "; the benchmark list uses the names of the 2019-2022 releases (or those names with ' 1' added, "
              "as later releases have them): pass --url of such a release, or --classes all")
    return chosen


def download_dataset(out, url=DEFAULT_URL, classes="benchmark", cache_dir=None, echo=print):
    """Fetch (or reuse from the cache) the archive at ``url``, extract the chosen classes into ``out``.

    Returns {split: {class: image count}}.
    """
    import keras

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FruitkerasError(f"{out} exists and is not empty; choose another --out (nothing was downloaded)")
    wanted = read_class_list(classes)
    name = "fruits360-" + "".join(c if c.isalnum() or c in "-._" else "_" for c in url.split("://", 1)[-1])[-120:]
    if not name.endswith(".zip"):
        name += ".zip"
    try:
        archive = Path(keras.utils.get_file(name, origin=url, cache_dir=cache_dir, cache_subdir="fruitkeras"))
    except Exception as error:  # get_file wraps HTTP and connection failures in a bare Exception
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FruitkerasError(f"download from {url} failed ({message}); nothing was kept, run the command again "
                              "to fetch it afresh") from None
    try:
        counts, mapping = _extract(archive, out, wanted)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as error:
        archive.unlink(missing_ok=True)  # a corrupt download must not stay in the cache
        raise FruitkerasError(f"the archive from {url} is corrupt or cut short ({error}); it was removed from the "
                              "cache, run the command again to fetch it afresh") from None
    renamed = {archive_name: ours for archive_name, ours in mapping.items() if archive_name != ours}
    (out / SOURCE_FILE).write_text(json.dumps({
        "url": url, "downloaded": datetime.now().astimezone().isoformat(timespec="seconds"),
        "classes": classes or "all", "renamed_from_archive": renamed,
        "images": {split: sum(per_class.values()) for split, per_class in counts.items()},
    }, indent=2) + "\n")
    for split, per_class in counts.items():
        echo(f"{split}: {sum(per_class.values()):,} images in {len(per_class)} classes")
    if renamed:
        echo(f"{len(renamed)} classes renamed to the benchmark's names (e.g. "
             + ", ".join(f"'{a}' -> '{b}'" for a, b in list(renamed.items())[:2]) + f"); see {out / SOURCE_FILE}")
    echo(f"wrote {out}")
    return counts


def _extract(archive, out, wanted):
    """Extract into a temporary folder beside ``out``, then rename it to ``out``."""
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [info for info in opened.infolist() if not info.is_dir()]
            root = split_root(info.filename for info in members)
            available = {PurePosixPath(info.filename).parts[len(root) + 1] for info in members
                         if PurePosixPath(info.filename).parts[: len(root) + 1] == (*root, TRAIN_SPLIT)
                         and len(PurePosixPath(info.filename).parts) == len(root) + 3}
            mapping = match_classes(wanted, available)
            counts = {TRAIN_SPLIT: {}, TEST_SPLIT: {}}
            for info in members:
                parts = PurePosixPath(info.filename).parts
                if len(parts) != len(root) + 3 or parts[: len(root)] != root:
                    continue
                split, archive_class, file_name = parts[len(root):]
                if split not in counts or archive_class not in mapping:
                    continue
                if Path(file_name).suffix.lower() not in IMAGE_SUFFIXES or file_name.startswith("."):
                    continue
                target = partial / split / mapping[archive_class] / file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                with opened.open(info) as source, open(target, "wb") as destination:
                    shutil.copyfileobj(source, destination)
                per_class = counts[split]
                per_class[mapping[archive_class]] = per_class.get(mapping[archive_class], 0) + 1
        lacking = [name for name in mapping.values() if name not in counts[TEST_SPLIT]]
        if lacking:
            raise FruitkerasError(f"the archive's Test/ lacks {len(lacking)} of the chosen classes: "
                                  f"{', '.join(lacking[:8])}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()  # empty (checked before the download)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return {split: dict(sorted(per_class.items())) for split, per_class in counts.items()}, mapping
