"""A decoded copy of a split's images on disk, so that the next training starts without decoding a JPEG.

Reformatting only (MLPerf allows it): the cache holds the very uint8 pixels
``data.decode_split`` makes, at one input size.  An entry is keyed on the
decoder's format, the input size, the class names and, for every listed file,
its absolute path, label, byte size, modification and change times: a
changed, added or removed image, another data folder or another size is
another key, so a stale entry is never served.  Each entry carries a CRC-32
of its pixels; a damaged entry is said so on stderr, deleted and rebuilt.

Where: ``$FRUITKERAS_CACHE``, else ``$XDG_CACHE_HOME/fruitkeras/decoded``,
else ``~/.cache/fruitkeras/decoded`` (outside the repository and the data
folder).  ``FRUITKERAS_CACHE=off`` decodes every time.  Clearing it is
deleting the folder.  ``prepare_data`` (``fruitkeras data prepare``) fills it ahead
of a training.
"""

import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from fruitkeras import data as datalib
from fruitkeras.errors import FruitkerasError

CACHE_ENV = "FRUITKERAS_CACHE"
# Raise when decode_split's pixels change, so that no older entry is served.
# 2: EXIF orientation applied, 16-bit and float grey scaled to 8 bits.
FORMAT = 2
IMAGES_FILE, META_FILE = "images.npy", "meta.json"


def cache_root():
    """The cache folder, or None when the cache is off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return None if chosen.lower() == "off" else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fruitkeras" / "decoded"


def entry_key(listed, size):
    """The hex key of a listed split (``data.scan_split``) decoded at ``size``; stats every file, reads none."""
    digest = hashlib.sha256(json.dumps([FORMAT, list(size), listed.class_names]).encode())
    for path, label in zip(listed.paths, listed.labels):
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\0"
                      f"{stat.st_ctime_ns}\n".encode())
    return digest.hexdigest()[:32]


def decode_cached(listed, size, quiet=False):
    """``data.decode_split(listed, size)``, from the cache when it holds this split at this size.

    A new entry is said on stdout unless ``quiet``; a damaged or unwritable one on stderr, always.
    """
    root = cache_root()
    if root is None:
        return datalib.decode_split(listed, size)
    try:
        folder = root / entry_key(listed, size)
    except OSError:  # a file gone since the listing: decoding says which, as it would without a cache
        return datalib.decode_split(listed, size)
    if folder.is_dir():
        try:
            return _read(folder, listed, size)
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"note: the decoded cache {folder} is damaged ({error}); rebuilding it", file=sys.stderr, flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    split = datalib.decode_split(listed, size)
    try:
        _write(folder, listed, split)
    except OSError as error:  # a full or read-only disk costs the next run time, not this one its training
        print(f"note: could not write the decoded cache {folder} ({error})", file=sys.stderr, flush=True)
    else:
        if not quiet:
            print(f"note: decoded {len(split):,} images at {size[0]}x{size[1]} in "
                  f"{time.perf_counter() - started:.1f} s into the cache {root} (later runs read them from there; "
                  "delete the folder to clear it)", flush=True)
    return split


def prepare_data(architecture_path, data=None, overrides=None, echo=print):
    """Decode the Training and Test photos that ``train`` would read for an architecture file (at its input size,
    after ``--set`` ``overrides``) into the cache, so that the next training, the one an examiner watches say,
    starts from it.  ``data``: as ``train``'s --data."""
    from fruitkeras.architecture import load_architecture, trained_here

    # The size the file trains at on this machine: a by_precision change may set it.
    chosen, architecture = trained_here(load_architecture(architecture_path), overrides)
    size = architecture.input_size
    root = cache_root()
    if root is None:
        raise FruitkerasError(f"the decoded cache is off ({CACHE_ENV}=off): there is nothing to prepare")
    data_root = datalib.resolve_data_dir(data)
    counts = []
    for name, split in zip((datalib.TRAIN_SPLIT, datalib.TEST_SPLIT), datalib.list_splits(data_root)):
        if split is None:
            continue
        decoded = decode_cached(split, size)
        datalib.report_skipped(decoded)
        counts.append(f"{name}/ ({len(decoded):,} photos)")
    echo(f"ready: {' and '.join(counts)} of {data_root} at {size[0]}x{size[1]} in the decoded cache {root}; "
         f"a training at this size ({chosen.compute} here: {chosen.reason}) reads them from there")


def _write(folder, listed, split):
    """Write the entry into a temporary folder, then rename it into place: a reader sees all of it or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        np.save(temporary / IMAGES_FILE, split.images)
        index = {path: number for number, path in enumerate(listed.paths)}
        meta = {
            "format": FORMAT,
            "shape": list(split.images.shape),
            "crc32": zlib.crc32(split.images.data),
            "kept": None if len(split) == len(listed) else [index[path] for path in split.paths],
            # Only the files that failed to decode: listing's own skips are listed again on every run.
            "failed": [[str(path), reason] for path, reason in split.skipped[len(listed.skipped):]],
        }
        (temporary / META_FILE).write_text(json.dumps(meta))
        try:
            temporary.rename(folder)
        except OSError:
            if not folder.is_dir():  # else another process wrote the same entry first
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _read(folder, listed, size):
    meta = json.loads((folder / META_FILE).read_text())
    if meta["format"] != FORMAT:
        raise ValueError(f"format {meta['format']}, expected {FORMAT}")
    shape = tuple(meta["shape"])
    if shape[1:] != (*size, 3):
        raise ValueError(f"images of shape {shape[1:]}, expected {(*size, 3)}")
    images = datalib.aligned_zeros(shape)  # aligned, so that TensorFlow uses the memory in place
    with open(folder / IMAGES_FILE, "rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        stored_shape, _, dtype = read_header(file)
        if stored_shape != shape or dtype != np.uint8:
            raise ValueError(f"{IMAGES_FILE} holds {dtype} {stored_shape}, expected uint8 {shape}")
        if file.readinto(memoryview(images).cast("B")) != images.nbytes or file.read(1):
            raise ValueError(f"{IMAGES_FILE} has the wrong length")
    if zlib.crc32(images.data) != meta["crc32"]:
        raise ValueError("its pixels fail their checksum")
    skipped = list(listed.skipped) + [(Path(path), reason) for path, reason in meta["failed"]]
    if meta["kept"] is None:
        return datalib.Split(listed.paths, listed.labels, listed.class_names, skipped, images)
    kept = listed.subset(np.asarray(meta["kept"], dtype=np.int64))
    kept.skipped, kept.images = skipped, images
    return kept
