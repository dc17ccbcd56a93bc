"""Debian's xrootd server on loopback, exporting one directory, for the benchmarks.

Started as tests/test_xrootd.py's ``XRootD`` does (same configuration directives, the same
``-R xrootd`` to drop root), without pytest. Also reports how many bytes the server has
read from its files (``rchar`` of /proc/<pid>/io: every read, pread and sendfile of the
process, so every byte it served), which says how much of each file a reader asked for.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


class Server:
    """An xrootd server exporting ``root / "data"`` on a free loopback port."""

    def __init__(self, root: Path) -> None:
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
            f"all.adminpath {root / 'admin'}\nall.pidpath {root / 'run'}\n")
        self.log = root / "admin" / "xrootd.log"  # a directory the xrootd user may write
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: Path) -> str:
        # XRootD URLs need the double slash before an absolute path
        return f"root://127.0.0.1:{self.port}/{path}"

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

    def bytes_read(self) -> int:
        """Bytes the server process has read so far (its files and its sockets)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise RuntimeError("no rchar in /proc/<pid>/io")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
