"""Remote inputs over XRootD, for real: Debian's xrootd server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyhf
import pytest
import yaml

from benchmarks.xrootd_server import Server

from .conftest import REPO, copy_checkout, run, venv_env

# the server as the benchmarks run it too: one configuration, one way to start it
XRootD = Server


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
