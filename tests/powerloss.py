"""Power loss for SQLite, simulated in an apsw VFS: what was not fsynced is gone after the crash.

A kill -9 keeps the OS page cache, so a store that never fsyncs survives it. This VFS models the cache:

- every file write lands in that file's cache image (`_FileState.image`), which reads see, as they would
  see the OS page cache; nothing reaches the real file yet;
- `xSync` of a file copies its image to the real file: the real files are the disk;
- at the crash point (the Nth `xSync` of the run, counted over all files, or `crash()` called between
  operations) every image is dropped, the Nth sync does not happen, and every later read, write, sync,
  truncate, open or delete fails with an I/O error. The real files then hold exactly what was synced.

It inherits the default VFS (normally "unix"): locking and the WAL's shared memory go to the real unix VFS (the
wal-index is rebuilt from the WAL when the store is reopened, as after a real reboot). Python VFS files
offer no xFetch, so SQLite cannot read around the cache through mmap.

Driving a store through it (see tests/test_powerloss.py): `Ledger` keeps the state after the acknowledged
operations and the state if the one in flight lands; `run_until_power_loss` runs a workload to its crash
point and "reboots" (closes every connection on the files, unregisters the VFS); `crash_points` lists
every sync and every acknowledged operation of a clean run as crash points.

Not modelled (so the test is a lower bound): torn or partial sector writes, a disk that reorders or keeps
only some unsynced writes, and directory durability (creating and deleting a file are durable at once;
SQLite's WAL mode does not depend on directory syncs for committed data).
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import apsw


# The unix VFS moves at most 128 KiB - 1 per read or write call (SQLite itself never asks for more than a
# page), so whole-file copies go in chunks.
_IO_CHUNK = 64 * 1024


class PowerLost(apsw.IOError):
    """Raised by the VFS at and after the crash point; SQLite sees an I/O error (SQLITE_IOERR)."""


@contextmanager
def power_loss_expected() -> Iterator[None]:
    """Swallow the PowerLost errors SQLite hits while cleaning up after the crash (apsw reports a second error
    raised during the first one's handling as "unraisable"); every other unraisable error is passed on."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, PowerLost):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


@dataclass
class _FileState:
    """One file's page cache: its current content as the OS would serve it, and what was done to it."""

    image: bytearray | None
    writes: int = 0
    syncs: int = 0
    dirty: bool = False


@dataclass
class SyncEvent:
    index: int  # 1-based, over every file of the run
    filename: str


class PowerLossVFS(apsw.VFS):
    """The page-cache VFS; `crash_at_sync=N` cuts the power at the Nth xSync (None: never by itself).

    `make_default=True` registers it as the default VFS so code that opens `apsw.Connection(path)` without
    a VFS name (TenantStore.open) runs through it; call `unregister()` when done.
    """

    def __init__(self, name: str = "powerloss", *, crash_at_sync: int | None = None, make_default: bool = False) -> None:
        # The VFS to inherit, by name: once this one is the default, "" would mean this one itself.
        self.base_name = apsw.vfs_names()[0]
        super().__init__(name, base=self.base_name, makedefault=make_default)
        self.name = name
        self.crash_at_sync = crash_at_sync
        self.crashed = False
        self.syncs: list[SyncEvent] = []
        self.files: dict[str, _FileState] = {}

    # -- power ---------------------------------------------------------------------------------------
    def crash(self) -> None:
        """Cut the power now: every unsynced write is lost, every later I/O fails."""
        self.crashed = True
        for state in self.files.values():
            state.image = None

    def writeback(self) -> None:
        """No crash after all: the OS writes every cached page back, as it eventually would."""
        self.check_power()
        for filename, state in self.files.items():
            if state.image is not None and state.dirty and os.path.exists(filename):
                with open(filename, "r+b") as handle:
                    handle.truncate(len(state.image))
                    handle.write(state.image)
                state.dirty = False

    def check_power(self) -> None:
        if self.crashed:
            raise PowerLost("simulated power loss")

    def before_sync(self, filename: str) -> None:
        self.check_power()
        event = SyncEvent(len(self.syncs) + 1, filename)
        if self.crash_at_sync is not None and event.index >= self.crash_at_sync:
            self.crash()
            raise PowerLost(f"simulated power loss at sync {event.index} ({filename})")
        self.syncs.append(event)

    def excepthook(self, etype, evalue, etraceback):
        if isinstance(evalue, PowerLost):  # an error SQLite cannot report (e.g. while closing): expected
            return True
        return super().excepthook(etype, evalue, etraceback)

    # -- VFS -----------------------------------------------------------------------------------------
    def xOpen(self, name, flags):  # noqa: N802 - apsw's method name
        self.check_power()
        if name is None:  # a temporary file without a name: never durable, nothing to model
            return apsw.VFSFile(self.base_name, name, flags)
        return PowerLossFile(self, name, flags)

    def xDelete(self, filename, syncdir):  # noqa: N802
        self.check_power()
        self.files.pop(filename, None)
        super().xDelete(filename, syncdir)


class PowerLossFile(apsw.VFSFile):
    """A file whose data goes through the VFS's page cache; locks and shared memory go to the base file."""

    def __init__(self, vfs: PowerLossVFS, name, flags) -> None:
        super().__init__(vfs.base_name, name, flags)
        self._vfs = vfs
        self._name = name.filename() if isinstance(name, apsw.URIFilename) else name
        state = vfs.files.get(self._name)
        if state is None or state.image is None:
            size = super().xFileSize()
            image = bytearray()
            for offset in range(0, size, _IO_CHUNK):
                image += super().xRead(min(_IO_CHUNK, size - offset), offset)
            state = vfs.files[self._name] = _FileState(image)
        self._state = state

    def _image(self) -> bytearray:
        self._vfs.check_power()
        assert self._state.image is not None
        return self._state.image

    def xRead(self, amount, offset):  # noqa: N802
        # Fewer bytes than asked is a short read: apsw zero-fills and reports SQLITE_IOERR_SHORT_READ.
        return bytes(self._image()[offset : offset + amount])

    def xWrite(self, data, offset):  # noqa: N802
        image = self._image()
        data = bytes(data)
        if offset > len(image):
            image.extend(bytes(offset - len(image)))
        image[offset : offset + len(data)] = data
        self._state.writes += 1
        self._state.dirty = True

    def xTruncate(self, newsize):  # noqa: N802
        image = self._image()
        if newsize < len(image):
            del image[newsize:]
        else:
            image.extend(bytes(newsize - len(image)))
        self._state.dirty = True

    def xFileSize(self):  # noqa: N802
        return len(self._image())

    def xSync(self, flags):  # noqa: N802
        self._vfs.before_sync(self._name)
        image = self._image()
        # The real file is the disk; no os.fsync: the process never really loses power.
        super().xTruncate(len(image))
        for offset in range(0, len(image), _IO_CHUNK):
            super().xWrite(bytes(image[offset : offset + _IO_CHUNK]), offset)
        self._state.syncs += 1
        self._state.dirty = False

    def excepthook(self, etype, evalue, etraceback):
        # SQLite cannot report errors from some calls (file size during close...): the power loss is expected.
        if isinstance(evalue, PowerLost):
            return True
        return super().excepthook(etype, evalue, etraceback)

    def xClose(self):  # noqa: N802
        # Closing does not flush: the page cache (our image) outlives the handle until a sync or the crash.
        super().xClose()


# -- driving a workload to its crash point --------------------------------------------------------------

S = TypeVar("S")
T = TypeVar("T")


class Ledger(Generic[S]):
    """What a reader must find after the crash: `acked` (the state after every acknowledged operation) or
    `in_flight` (that state plus the operation running when the power went), never anything in between.

    `crash_after_ack=k` cuts the power right after the k-th acknowledgement (a crash between operations).
    """

    def __init__(self, initial: S, vfs: PowerLossVFS, crash_after_ack: int | None = None) -> None:
        self.acked = initial
        self.in_flight: S | None = None
        self.acks = 0
        self._vfs = vfs
        self._crash_after_ack = crash_after_ack

    def op(self, apply: Callable[[S], None], call: Callable[[], T]) -> T:
        """Run one operation: `apply` edits a copy of the expected state as the operation should; `call` does it."""
        candidate = copy.deepcopy(self.acked)
        apply(candidate)
        self.in_flight = candidate
        result = call()
        self.acked, self.in_flight = candidate, None
        self.acks += 1
        if self.acks == self._crash_after_ack:
            self._vfs.crash()
            raise PowerLost(f"power cut after acknowledged operation {self.acks}")
        return result

    def allowed(self) -> list[S]:
        return [self.acked] + ([self.in_flight] if self.in_flight is not None else [])


def close_after_crash(conn: apsw.Connection) -> None:
    """Close a connection after the crash: its I/O fails, like the dead process's would, and apsw keeps a
    connection open when close() fails, so retry until SQLite has nothing left to flush."""
    for _ in range(10):
        try:
            conn.close()
            return
        except apsw.Error:
            continue
    raise AssertionError(f"connection to {conn.filename} would not close after the crash")


def run_until_power_loss(vfs: PowerLossVFS, workload: Callable[[], None], files: Iterable[Path]) -> None:
    """Run `workload` through `vfs` until it ends or the power goes, then reboot: every apsw connection on
    `files` is closed (also those a failed open left behind) and the VFS unregistered. Without a crash the
    OS writes the cache back. Errors other than the power loss propagate."""
    names = {str(path) for path in files}
    with power_loss_expected():
        try:
            workload()
            if not vfs.crashed:
                vfs.writeback()
        except apsw.Error:
            if not vfs.crashed:
                raise
        finally:
            for conn in apsw.connections():
                if conn.filename in names:
                    close_after_crash(conn)
            vfs.unregister()


@dataclass(frozen=True)
class CrashPoint:
    at_sync: int | None = None
    after_ack: int | None = None

    @property
    def label(self) -> str:
        return f"sync{self.at_sync}" if self.at_sync else f"ack{self.after_ack}" if self.after_ack else "clean"


def crash_points(syncs: int, acks: int) -> list[CrashPoint]:
    """Every sync of a clean run that made `syncs` syncs, then after each of its `acks` acknowledgements."""
    return [CrashPoint(at_sync=n) for n in range(1, syncs + 1)] + [CrashPoint(after_ack=k) for k in range(1, acks + 1)]
