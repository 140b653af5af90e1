"""One writer per run folder: an advisory lock (``flock``) on a file inside it.

The kernel drops the lock when its process dies however it dies, kill -9
included, so a lock left behind never blocks a later ``--resume``; the file
holds the writer's process id for the message to the one refused.
"""

import contextlib
import fcntl
import os
import time
from pathlib import Path

from fruitkeras.errors import FruitkerasError
from fruitkeras.run_folder import LOCK_FILE


@contextlib.contextmanager
def held(run_dir):
    """Hold ``run_dir``'s lock for the block (creating the folder); a FruitkerasError at once when another
    process holds it.  The lock file is removed when the block ends."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    while True:
        handle = open(path, "a+", encoding="utf-8")
        if not _locked(handle):
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise FruitkerasError(f"{run_dir} is in use by process {holder} (a train or --resume writing to it); "
                                  "wait for it to end, or train into another --run-dir") from None
        # The file may have been removed by the holder that had it just before: lock the one at the path.
        if _same_file(handle, path):
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()
        if created:
            with contextlib.suppress(OSError):  # only when the refused or failed command left it empty
                run_dir.rmdir()


def holder(run_dir):
    """The process id that holds ``run_dir``'s lock now (a string), None when nothing does."""
    path = Path(run_dir) / LOCK_FILE
    try:
        handle = open(path, encoding="utf-8")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _locked(handle, tries=4):
    # A few short tries: ``holder`` (``fruitkeras runs``) takes the lock for an instant to look.
    for attempt in range(tries):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < tries - 1:
                time.sleep(0.05)
    return False


def _same_file(handle, path):
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False
