"""Writing a file so that a reader never sees half of it: one helper for every file a run keeps."""

import errno
import os
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_MARK = ".tmp"  # in every temporary name, so that what a killed process left can be found and removed
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def replaced_atomically(path):
    """Yields a temporary path beside ``path`` (same suffix) to write; when the block ends without an error the
    file is flushed to the disk and replaces ``path`` in one rename.  In every case nothing of the temporary file
    is left: a reader sees the old file or the new one, whole, even after a kill or a power cut."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}{TEMPORARY_MARK}{path.suffix}")
    try:
        yield temporary
        _flush_to_disk(temporary)
        os.replace(temporary, path)
    except OSError as error:
        if error.filename is None:  # a failed write or flush names no file: say which one it was
            error.filename = str(path)
        raise
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path, data):
    """``data`` (bytes or str) as the whole of ``path``, atomically (``replaced_atomically``)."""
    with replaced_atomically(path) as temporary:
        if isinstance(data, str):
            temporary.write_text(data, encoding="utf-8")
        else:
            temporary.write_bytes(data)


def remove_temporaries(folder):
    """Delete the temporary files that a process killed while writing left in ``folder`` and below it."""
    for path in Path(folder).rglob(f".*{TEMPORARY_MARK}*"):
        path.unlink(missing_ok=True)


def is_disk_full(error):
    return isinstance(error, OSError) and error.errno in DISK_FULL


def _flush_to_disk(path):
    # Without it a power cut after the rename can leave the new name on an empty file (the data still in memory).
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
