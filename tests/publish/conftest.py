"""Fixtures for the publisher tests: a small validated repository, the fake services, a runner.

The repository is a miniature of pubflow's (workflow files, the real analysis config, a few
results and a validation report that vouches for them), so a publisher runs on it exactly as
on the real one, in a fraction of the time. The fake services listen on 127.0.0.1 (ephemeral
ports) and stop at the end of each test.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import logging
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import steps.config
import steps.layout
from steps import cli
from steps.publish.__main__ import build_parser, main

from .fake_cap import FakeCAP
from .fake_hepdata import FakeHEPData
from .fake_zenodo import FakeZenodo
from .fakes import running

REPO = Path(__file__).resolve().parents[2]

#: Credentials the fakes accept. Distinctive, so that a leak is unmistakable in a grep.
ZENODO_TOKEN = "zenodo-tok-9f1c2b7e5a4d3c21e0f9"
CAP_TOKEN = "cap-tok-77aa31c0de9b4f12a3c5"
HEPDATA_PASSWORD = "hd-pass-5e6f7a8b9c0d1e2f"
HEPDATA_COOKIE = "hd-cookie-0a1b2c3d4e5f6a7b"
HEPDATA_EMAIL = "uploader@example.org"
INVENIORDM_TOKEN = "rdm-tok-4c1d9e77b0a2f35e8d61"
SECRETS = (ZENODO_TOKEN, CAP_TOKEN, HEPDATA_PASSWORD, HEPDATA_COOKIE, INVENIORDM_TOKEN)
#: The test repository's CADI line (CAP's pattern; the bundled open-data analysis has none).
CADI_ID = "TST-26-001"
ENV = {"ZENODO_TOKEN": ZENODO_TOKEN, "CAP_ACCESS_TOKEN": CAP_TOKEN,
       "HEPDATA_PASSWORD": HEPDATA_PASSWORD, "HEPDATA_INVITATION_COOKIE": HEPDATA_COOKIE,
       "HEPDATA_EMAIL": HEPDATA_EMAIL, "INVENIORDM_TOKEN": INVENIORDM_TOKEN}

#: Network options for tests: no waiting, short timeouts, one try (or as given).
def net(tries: int = 1, timeout: float = 0.5) -> list[str]:
    return ["--retries", str(tries), "--backoff", "0", "--max-delay", "0",
            "--timeout", str(timeout), "--connect-timeout", "0.5"]


SUBMISSION_YAML = b"""comment: "A test submission"
---
name: "Table 1"
description: "Event yield"
keywords: []
data_file: table1.yaml
"""


def table_yaml(events: int) -> bytes:
    return (b"independent_variables:\n- header: {name: M, units: GeV}\n  values:\n"
            b"  - {low: 60, high: 120}\ndependent_variables:\n- header: {name: Events}\n"
            b"  values:\n  - {value: %d}\n" % events)


def write_archive(path: Path, events: int = 501, extra: bytes = b"") -> None:
    """A small HEPData archive that hepdata-validate accepts."""
    members = {"submission.yaml": SUBMISSION_YAML, "table1.yaml": table_yaml(events) + extra}
    raw = io.BytesIO()
    with (gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
          tarfile.open(fileobj=gz, mode="w") as tar):
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.getvalue())


REPORTED = ["results/config.json", "inputs/datasets.yaml", "results/model/workspace.json",
            "results/hepdata/submission.tar.gz"]


def write_report(root: Path, valid: bool = True) -> None:
    """A validation report like steps.validate's, vouching for the current files: the
    inputs, the likelihood, the archive and every fit result and figure (``--outputs``)."""
    outputs = sorted(str(p.relative_to(root)) for p in (root / "results" / "fit").rglob("*")
                     if p.suffix in (".json", ".png", ".pdf"))
    checks = [{"artefact": name, "messages": [], "summary": "", "tool": "test",
               "valid": True, "sha256": hashlib.sha256((root / name).read_bytes()).hexdigest()}
              for name in [*REPORTED, *outputs]]
    report = root / "results" / "validation" / "report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"valid": valid, "checks": checks}, indent=2) + "\n")


def change_results(repo: Path) -> None:
    """A changed fit result and one figure fewer, validated again (as the workflow does)."""
    (repo / "results/fit/results.json").write_text('{"mu": 1.05}')
    (repo / "results/fit/figures/brazil.png").unlink()
    write_report(repo)


def make_repo(root: Path) -> Path:
    """A miniature pubflow checkout with validated results."""
    files = {
        "Snakefile": "configfile: 'inputs/analysis.yaml'\n",
        "workflows/rules/main.smk": "rule main:\n    shell: 'true'\n",
        "steps/__init__.py": '"""steps"""\n',
        "steps/__pycache__/x.cpython-311.pyc": "cache",
        "reana.yaml": "version: 0.9.0\nworkflow:\n  type: snakemake\n  file: Snakefile\n",
        "environments/publish/Dockerfile": "FROM python:3.11-slim\n",
        "results/model/workspace.json": json.dumps({"channels": [], "version": "1.0.0"}),
        "results/fit/results.json": json.dumps({"mu": 1.0}),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "results/fit/figures").mkdir(parents=True)
    (root / "results/fit/figures/brazil.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    for name in ("pubflow.yaml", "analysis.yaml", "datasets.yaml"):
        (root / "inputs").mkdir(exist_ok=True)
        shutil.copyfile(REPO / "inputs" / name, root / "inputs" / name)
    # the config the run read, as rule config writes it
    config = steps.layout.resolve(steps.layout.load_yaml(REPO / "inputs" / "pubflow.yaml"),
                                  base=REPO)
    config["Publication"]["CadiId"] = CADI_ID  # a CAP upload needs one (the bundled has none)
    (root / "results" / "config.json").write_text(json.dumps(config, indent=2))
    write_archive(root / "results/hepdata/submission.tar.gz")
    write_report(root)
    return root


_YAML_CACHE: dict[tuple[str, int, int], object] = {}


@pytest.fixture(autouse=True)
def _parse_each_config_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test speed only: PyYAML's pure-Python parser takes ~30 ms for the analysis config,
    and the fault matrix runs the publishers some 700 times on the same file. Parse each
    (path, size, mtime) once; every caller still gets its own copy."""
    original = steps.config.load_yaml

    def cached(path: str | Path) -> object:
        try:
            stat = Path(path).stat()
        except OSError:
            return original(path)
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _YAML_CACHE:
            _YAML_CACHE[key] = original(path)
        return copy.deepcopy(_YAML_CACHE[key])

    monkeypatch.setattr(steps.config, "load_yaml", cached)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A miniature repository, the current directory for the test."""
    root = make_repo(tmp_path / "pubflow")
    monkeypatch.chdir(root)
    return root


@dataclass
class Run:
    """A publisher run: exit code, what it printed, what it logged."""

    rc: int
    out: str
    log: str


@pytest.fixture
def publish(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
            monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """Run ``python -m steps.publish ARGS`` in-process, with the credentials of ``env``."""
    caplog.set_level(logging.DEBUG)  # everything, urllib3's request lines included

    def run(*argv: str, env: dict[str, str] | None = None) -> Run:
        for name in ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        caplog.clear()
        rc = cli.run(main, build_parser, list(argv))
        captured = capsys.readouterr()
        return Run(rc, captured.out + captured.err, caplog.text)

    return run


@pytest.fixture
def zenodo() -> Iterator[FakeZenodo]:
    with running(lambda: FakeZenodo({ZENODO_TOKEN})) as service:
        yield service  # type: ignore[misc]


@pytest.fixture
def hepdata() -> Iterator[FakeHEPData]:
    with running(lambda: FakeHEPData({HEPDATA_EMAIL: HEPDATA_PASSWORD})) as service:
        yield service  # type: ignore[misc]


@pytest.fixture
def cap() -> Iterator[FakeCAP]:
    with running(lambda: FakeCAP({CAP_TOKEN})) as service:
        yield service  # type: ignore[misc]


def leaks(root: Path, *texts: str) -> list[str]:
    """Where a secret value appears: any file under ``root``, or the given texts."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            for arch in (data, _tar_contents(path, data)):
                found += [f"{path}: {s[:8]}..." for s in SECRETS if s.encode() in arch]
    for i, text in enumerate(texts):
        found += [f"text {i}: {s[:8]}..." for s in SECRETS if s in text]
    return found


def _tar_contents(path: Path, data: bytes) -> bytes:
    """The concatenated members of a .tar.gz (archives are searched inside too)."""
    if not path.name.endswith(".tar.gz"):
        return b""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
