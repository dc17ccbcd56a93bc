"""Debian's xrootd server on loopback, exporting one directory, for the benchmarks.

The one place the server is configured and started: the benchmarks use it, and the tests
(tests/test_xrootd.py's ``XRootD`` is this class). It reports how many bytes the server has
read from its files (``rchar`` of /proc/<pid>/io: every read, pread and sendfile of the
process, so every byte it served), which says how much of each file a reader asked for, and
how many it has written (``wchar``: its sockets, so what it sent to readers).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


class Server:
    """An xrootd server exporting ``root / "data"`` on a free loopback port (``config``:
    extra lines of its configuration, e.g. ``xrootd.chksum adler32``)."""

    def __init__(self, root: Path, config: str = "") -> None:
        self.root = root
        self.export = root / "data"
        self.export.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        for sub in ("admin", "run"):
            (root / sub).mkdir(exist_ok=True)
        (root / "xrd.cfg").write_text(
            f"xrd.port {self.port}\nall.export {self.export}\n"
            f"all.adminpath {root / 'admin'}\nall.pidpath {root / 'run'}\n{config}")
        self.log = root / "admin" / "xrootd.log"  # a directory the xrootd user may write
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str | Path) -> str:
        """The URL of a file of the export (``name`` relative to it, or absolute)."""
        # XRootD URLs need the double slash before an absolute path
        return f"root://127.0.0.1:{self.port}/{self.export / name}"

    def start(self) -> None:
        if shutil.which("xrootd") is None:
            raise RuntimeError("Debian's xrootd-server is not installed "
                               "(apt-get install xrootd-server)")
        # every directory above the export must be searchable by the xrootd user
        for parent in [self.root, *self.root.parents]:
            if parent == Path("/tmp") or parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o755)
        shutil.chown(self.root / "admin", "xrootd")
        shutil.chown(self.root / "run", "xrootd")
        self.proc = subprocess.Popen(
            ["xrootd", "-R", "xrootd", "-c", str(self.root / "xrd.cfg"), "-l", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"xrootd did not start; see {self.log}")

    def _io(self, counter: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith(f"{counter}:"):
                return int(line.split()[1])
        raise RuntimeError(f"no {counter} in /proc/<pid>/io")

    def bytes_read(self) -> int:
        """Bytes the server process has read so far (its files and its sockets)."""
        return self._io("rchar")

    def bytes_written(self) -> int:
        """Bytes the server has written so far (its sockets and its log): the kernel's count,
        which no client-side wrapper can miss."""
        return self._io("wchar")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
