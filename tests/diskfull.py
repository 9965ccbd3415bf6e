"""A full disk for SQLite, simulated in an apsw VFS (beside tests/powerloss.py's power loss): chosen writes fail
with SQLITE_FULL, as the unix VFS fails them when write() gets ENOSPC.

The service's processes (its TenantSupervisor replica, its tenants' shard actors) install it as their default VFS
at start (`install()`, from a sitecustomize.py the test puts on their PYTHONPATH), so every database they open
without naming a VFS goes through it. A test steers it from outside through a control file, whose path every process
reads from $SECUREGATE_TEST_DISK_FULL:

- no control file: every write goes through;
- a control file {"root": DIR, "after": N}: in each process, the first N writes to files under DIR after the
  file appeared go through, every later one fails with SQLITE_FULL (N = 0: the disk is full now; N > 0: it
  fills in the middle of a transaction). Deleting the file frees the space.

Reads, locks and the WAL index (shared memory) are the base VFS's, untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import apsw

CONTROL_ENV = "SECUREGATE_TEST_DISK_FULL"


class Control:
    """The control file, re-read when it changes (mtime and size); counts this process's writes since."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple | None = None
        self._rule: dict | None = None
        self.writes = 0

    def refuses(self, filename: str) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._rule = None, None
            return False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._rule = json.loads(Path(self.path).read_text() or "{}")
            except (OSError, ValueError):  # being written: take it as full, it is about to say so
                self._rule = {"root": "/", "after": 0}
            self._stamp, self.writes = stamp, 0
        if not filename.startswith(str(self._rule.get("root", "/"))):
            return False
        self.writes += 1
        return self.writes > int(self._rule.get("after", 0))


class DiskFullVFS(apsw.VFS):
    def __init__(self, control: Control, name: str = "diskfull") -> None:
        self.base_name = apsw.vfs_names()[0]  # by name: once this one is the default, "" would mean itself
        super().__init__(name, base=self.base_name, makedefault=True)
        self.control = control

    def xOpen(self, name, flags):  # noqa: N802 - apsw's method name
        if name is None:
            return apsw.VFSFile(self.base_name, name, flags)
        return DiskFullFile(self, name, flags)


class DiskFullFile(apsw.VFSFile):
    def __init__(self, vfs: DiskFullVFS, name, flags) -> None:
        super().__init__(vfs.base_name, name, flags)
        self._control = vfs.control
        self._name = name.filename() if isinstance(name, apsw.URIFilename) else str(name)

    def xWrite(self, data, offset):  # noqa: N802
        if self._control.refuses(self._name):
            raise apsw.FullError("simulated: no space left on the device")
        super().xWrite(data, offset)

    def xTruncate(self, newsize):  # noqa: N802 - growing a file needs space too
        if newsize > super().xFileSize() and self._control.refuses(self._name):
            raise apsw.FullError("simulated: no space left on the device")
        super().xTruncate(newsize)


_installed: list[DiskFullVFS] = []  # the VFS must outlive every connection opened through it


def install() -> None:
    """The full-disk VFS becomes this process's default (once), if $SECUREGATE_TEST_DISK_FULL names a control file."""
    path = os.environ.get(CONTROL_ENV)
    if path and not _installed:
        _installed.append(DiskFullVFS(Control(path)))
