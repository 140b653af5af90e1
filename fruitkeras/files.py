"""Writing a file so that a reader never sees half of it: one helper for every file a run keeps."""

import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path):
    """Yields a temporary path beside ``path`` (same suffix) to write; when the block ends without an error it
    replaces ``path`` in one rename, and in every case nothing of the temporary file is left."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
