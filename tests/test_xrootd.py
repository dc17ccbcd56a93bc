"""Remote inputs over XRootD, for real: Debian's xrootd server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyhf
import pytest
import yaml

from .conftest import REPO, copy_checkout, run, venv_env


class XRootD:
    """An xrootd server exporting one directory, on a free loopback port."""

    def __init__(self, root: Path, config: str = "") -> None:
        self.root = root
        self.export = root / "data"
        self.export.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        for sub in ("admin", "run"):
            (root / sub).mkdir()
        (root / "xrd.cfg").write_text(
            f"xrd.port {self.port}\nall.export {self.export}\n"
            f"all.adminpath {root / 'admin'}\nall.pidpath {root / 'run'}\n{config}"
        )
        self.log = root / "admin" / "xrootd.log"  # a directory the xrootd user may write
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        # XRootD URLs need the double slash before an absolute path
        return f"root://127.0.0.1:{self.port}/{self.export / name}"

    def start(self) -> None:
        shutil.chown(self.root / "admin", "xrootd")
        shutil.chown(self.root / "run", "xrootd")
        # the server refuses to run as root: -R drops to the xrootd user
        self.proc = subprocess.Popen(
            ["xrootd", "-R", "xrootd", "-c", str(self.root / "xrd.cfg"),
             "-l", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"xrootd did not start; see {self.log}")

    def bytes_written(self) -> int:
        """Bytes the server has written so far (its sockets and its log): the kernel's
        ``wchar`` of the process, a count no client-side wrapper can miss."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        raise RuntimeError("no wchar in /proc/PID/io")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@contextlib.contextmanager
def serving(config: str = "") -> Iterator[XRootD]:
    """A running xrootd server (``config``: extra lines of its configuration)."""
    if shutil.which("xrootd") is None:
        if os.environ.get("CI"):
            pytest.fail("xrootd is not installed: .ci/run installs Debian's xrootd-server")
        pytest.skip("Debian's xrootd-server is not installed (apt-get install xrootd-server)")
    # readable by the unprivileged xrootd user (pytest's tmp_path is private to root)
    root = Path(tempfile.mkdtemp(prefix="pubflow-xrootd-", dir="/tmp"))
    root.chmod(0o755)
    server = XRootD(root, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def xrootd() -> Iterator[XRootD]:
    with serving() as server:
        yield server


def test_workflow_on_remote_data_equals_local(xrootd: XRootD, workflow_run: Path,
                                              tmp_path: Path) -> None:
    shutil.copy(REPO / "inputs/data/uproot-Zmumu.root", xrootd.export / "uproot-Zmumu.root")
    os.chmod(xrootd.export / "uproot-Zmumu.root", 0o644)
    url = xrootd.url("uproot-Zmumu.root")
    work = copy_checkout(tmp_path / "remote")
    config = yaml.safe_load((work / "inputs/analysis.yaml").read_text())
    config["Samples"][0]["SamplePath"] = url
    (work / "inputs/analysis.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    manifest = yaml.safe_load((work / "inputs/datasets.yaml").read_text())
    manifest["files"][0]["path"] = url
    (work / "inputs/datasets.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))

    run(["snakemake", "--cores", "2", "model"], work)

    remote = json.loads((work / "results/histograms.json").read_text())
    local = json.loads((workflow_run / "results/histograms.json").read_text())
    assert remote["Dimuon_Data"]["files"] == [url]
    assert {k: v["yield"] for k, v in remote.items()} == {k: v["yield"] for k, v in local.items()}
    digests = [pyhf.utils.digest(json.loads((d / "results/model/workspace.json").read_text()))
               for d in (work, workflow_run)]
    assert digests[0] == digests[1]


def test_server_lost_mid_read_fails_cleanly_and_resumes(xrootd: XRootD, tmp_path: Path
                                                        ) -> None:
    work = copy_checkout(tmp_path / "w")
    local = xrootd.export / "Zmumu.root"
    run([sys.executable, "-m", "steps.simulate", "--config", "inputs/pubflow.yaml",
         "--output", "results/simulate/Zmumu.root", "--events", "200000"], work)
    shutil.move(work / "results/simulate/Zmumu.root", local)
    os.chmod(local, 0o644)
    url = xrootd.url("Zmumu.root")
    config = yaml.safe_load((work / "inputs/analysis.yaml").read_text())
    config["Samples"][1]["SamplePath"] = url
    (work / "inputs/analysis.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = work / "results/select/Zmumu.npz"
    cmd = [sys.executable, "-m", "steps.select", "--verbose", "--config",
           "inputs/pubflow.yaml", "--input", url, "--output", str(out), "--step-size", "2000"]

    proc = subprocess.Popen(cmd, cwd=work, env=venv_env(), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if ": chunk 1" in line:
            xrootd.stop()  # the server goes away in the middle of the read
            break
    rest = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1, "".join(lines) + rest
    errors = [x for x in rest.splitlines() if x.startswith("python -m steps.select: error: ")]
    assert len(errors) == 1, rest
    assert url in errors[0]
    assert "lost connection" in errors[0]
    assert "Traceback" not in rest
    assert not out.exists()

    xrootd.start()  # back again: the same command now completes
    result = run(cmd, work)
    assert result.returncode == 0
    assert out.exists()
