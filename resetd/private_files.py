"""Files resetd creates are readable and writable by its own user alone (0600).

The databases hold password hashes, reset mail waiting in the outbox (links
included) and captured mail; the inbox's TLS key is a key. Under the usual
umask 022 they were created 0644, readable by every local user.

SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files with the
permission bits of the database file itself (and sets them so whatever the
umask), so creating the empty database file 0600 before SQLite opens it covers
all of them. A file that exists already is left as it is — its mode may be
the operator's choice — but each one its group or others can use is named in a
warning at start.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE = 0o600
PRIVATE_DIR = 0o700
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

# Each exposed file is named once per process, not again by every later open
# (serve reopens the database to count what is left at shutdown).
_warned: set[str] = set()


def create_private(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless something is there; True if created.

    Never follows or replaces an existing file or symlink. Raises OSError when
    the directory cannot be written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE)  # a umask such as 0o277 would have taken more bits off
    finally:
        os.close(fd)
    return True


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, which is mode 0600 afterwards whether or not it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, PRIVATE)
        out.write(data)


def make_private_dir(path: Path) -> None:
    """Create the directory ``path`` and each of its missing parents, every one
    0700 whatever the umask; directories that exist are left as they are.

    Not ``os.makedirs(mode=0o700)``: since Python 3.7 its mode applies to the
    last directory only, and the parents it makes follow the umask (0777 under
    umask 000, so anyone could swap the files inside for their own).
    Raises OSError when one cannot be made.
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # made meanwhile by someone else: theirs, left as it is
        os.chmod(directory, PRIVATE_DIR)  # a umask such as 0o277 took more bits off


def warn_if_exposed(paths: Iterable[Path], holds: str) -> None:
    """Log a warning for each of ``paths`` that exists and is open to group or others."""
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        key = str(path.resolve())
        if mode & 0o077 and key not in _warned:
            _warned.add(key)
            log.warning(
                "%s is open to other users (mode %04o) and holds %s; "
                "make it private with: chmod 600 %s",
                path,
                mode,
                holds,
                path,
            )


def prepare_database(path: str) -> None:
    """Before SQLite opens ``path``: create it 0600 if it is missing, otherwise warn
    when it or its -wal/-shm/-journal files are open to other users."""
    db = Path(path)
    make_private_dir(db.parent)
    if create_private(db):
        # Left over from a database that is gone: SQLite would use them as they are.
        companions = [Path(path + suffix) for suffix in SQLITE_COMPANIONS]
    else:
        companions = [db, *(Path(path + suffix) for suffix in SQLITE_COMPANIONS)]
    warn_if_exposed(companions, "password hashes, reset links or captured mail")
