"""How SecureGate opens SQLite: one driver (apsw) and one set of durability and privacy settings.

Every database of ours (`registry.db`, and each tenant's `embeddings.db`, `audit.db`, `events.db`) is opened
by `connect`. `kms/keyring.py` opens `keystore.db` with its own copy of these settings (kms imports nothing
of ours): change both together.

Why apsw rather than the stdlib sqlite3 module:
- it bundles a current SQLite, so WAL, secure_delete and JSON CHECKs behave the same on every host whatever
  libsqlite3 the system has;
- `with conn:` really begins a transaction and nested ones become savepoints, so callers group writes into
  one commit (sqlite3 begins implicitly, before writes only, and cannot nest);
- a VFS can be written in Python: the power-loss test (tests/powerloss.py) runs the real stores through one
  that throws away every write not yet fsynced (`vfs=`).

An apsw connection refuses to run in two threads at once (ThreadingViolationError): a class that shares one
across threads holds its lock around every statement, fetches included.
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw

# WAL + synchronous=FULL: a commit returns only after the WAL is fsynced, so it survives power loss.
# secure_delete: deleted rows are zeroed, not left readable in free pages. foreign_keys: ON DELETE CASCADE holds.
PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "foreign_keys=ON")
# A writer waits this long for another connection's write lock rather than failing at once.
BUSY_TIMEOUT_MS = 5_000
# SQLite creates these beside the database with the database file's own mode.
SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path`, with every missing directory of it created 0700 (existing ones are left as they are)."""
    path = Path(path)
    missing = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: as with existing ones, leave it
            continue
        os.chmod(directory, 0o700)  # mkdir's mode is narrowed by the umask, never widened: say it exactly
    return path


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create the database file 0600 before SQLite opens it (its -wal/-shm/-journal then get 0600 too); an
    existing one and its side files are tightened to 0600 (older versions left registry.db 0644)."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in SIDE_FILES:
        try:
            os.chmod(f"{path}{suffix}", 0o600)
        except FileNotFoundError:
            pass
    return path


def connect(path: str | os.PathLike[str], *, vfs: str | None = None) -> apsw.Connection:
    """An apsw connection to the database at `path` (created private if missing) with SecureGate's settings.

    `vfs`: the name of a registered apsw VFS to run the file through (the power-loss test's); None = SQLite's
    default VFS.
    """
    conn = apsw.Connection(str(private_file(path)), vfs=vfs)
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        for pragma in PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
    except BaseException:
        conn.close()
        raise
    return conn


def columns(row: type[tuple]) -> str:
    """The SELECT list of a row type (a NamedTuple named after its columns): a row is read by column name,
    `map(Row._make, cursor)`, and the names are written once."""
    return ", ".join(row._fields)  # type: ignore[attr-defined]


def placeholders(row: type[tuple]) -> str:
    """The VALUES list of a row type written whole: `INSERT INTO t ({columns(Row)}) VALUES ({placeholders(Row)})`."""
    return ", ".join("?" * len(row._fields))  # type: ignore[attr-defined]
