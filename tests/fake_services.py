"""Stand-ins for the services reproduce talks to: a HEPData site and reana-client.

* :func:`serve_record` serves one record the way hepdata.net does (``/record/ins<id>`` and
  ``/record/<recid>`` with ``?format=json``, ``?format=yaml&table=<name>`` redirecting to
  ``/download/table/<id>/<name>/<version>/yaml``) on 127.0.0.1, port 0.
* :func:`write_fake_reana` writes an executable ``reana-client`` that records every call and
  really runs the uploaded workflow with Snakemake in a "server" folder (or fails on demand),
  so that the orchestration code is exercised end to end.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml


@dataclass
class RecordServer:
    """A running fake HEPData site: its address and the paths it was asked for."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serve_record(tables: Mapping[str, Mapping[str, Any]], *, inspire_id: int, recid: int,
                 version: int = 1, link_tables: Sequence[str] | None = None
                 ) -> Iterator[RecordServer]:
    """Serve one finished record holding ``tables`` (HEPData's table YAML format).

    Tables named in ``link_tables`` (default: all) carry their download addresses under
    ``data`` in the record JSON, as hepdata.net's do; the others must be asked for with
    ``?format=yaml&table=<name>``.
    """
    names = list(tables)
    linked = set(names if link_tables is None else link_tables)
    doi = f"10.17182/hepdata.{recid}.v{version}"
    state = RecordServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes = b"", kind: str = "text/plain",
                  location: str | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.requests.append(self.path)
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            record = re.fullmatch(r"/record/(ins\d+|\d+)", parts.path)
            if record:
                if record.group(1) not in (f"ins{inspire_id}", str(recid)):
                    return self._send(404, b"no such record")
                if int(query.get("version", version)) != version:
                    return self._send(404, b"no such version")
                fmt = query.get("format", "html")
                if "table" in query:
                    return self._send(302, location=f"/download/table/ins{inspire_id}/"
                                      f"{quote(query['table'])}/{version}/{fmt}")
                if fmt != "json":
                    return self._send(200, b"<html>record</html>", "text/html")
                return self._send(200, json.dumps(self._record()).encode(), "application/json")
            table = re.fullmatch(r"/download/table/(ins\d+|\d+)/(.+)/(\d+)/yaml", parts.path)
            if table and unquote(table.group(2)) in tables:
                name = unquote(table.group(2))
                body = {**tables[name], "hepdata_doi": doi,
                        "table_doi": f"{doi}/t{names.index(name) + 1}"}
                return self._send(200, yaml.safe_dump(body, sort_keys=False).encode(),
                                  "text/yaml")
            return self._send(404, b"not found")

        def _record(self) -> dict[str, Any]:
            entries = []
            for i, name in enumerate(names):
                entry: dict[str, Any] = {
                    "id": 1000 + i, "name": name, "processed_name": "".join(name.split()),
                    "location": "", "doi": f"{doi}/t{i + 1}", "description": name}
                if name in linked:
                    entry["data"] = {fmt: f"{state.url}/download/table/ins{inspire_id}/"
                                          f"{quote(name)}/{version}/{fmt}"
                                     for fmt in ("json", "root", "csv", "yoda", "yaml")}
                entries.append(entry)
            return {"recid": recid, "version": version, "version_count": version,
                    "status": "finished",
                    "record": {"inspire_id": str(inspire_id), "recid": recid,
                               "title": "A test record", "hepdata_doi": doi},
                    "data_tables": entries}

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with serving(Handler) as url:
        state.url = url
        yield state


FAKE_REANA = r'''#!{python}
"""Fake reana-client: records each call; runs the uploaded workflow with Snakemake."""
import json, os, shutil, subprocess, sys, time, zipfile
from pathlib import Path

import yaml

STATE = Path(os.environ["FAKE_REANA_STATE"])
MODE = os.environ.get("FAKE_REANA_MODE", "run")
BIN = Path({python!r}).parent
argv = sys.argv[1:]
token = os.environ.get("REANA_ACCESS_TOKEN", "")
STATE.mkdir(parents=True, exist_ok=True)
with open(STATE / "calls.jsonl", "a") as f:
    f.write(json.dumps({{"argv": argv, "cwd": os.getcwd(),
                        "server": os.environ.get("REANA_SERVER_URL"),
                        "token_set": bool(token),
                        "token_in_argv": bool(token) and any(token in a for a in argv)}}) + "\n")


def opt(flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


def workspace(name):
    return STATE / name / "workspace"


command = argv[0] if argv else ""
if not token or not os.environ.get("REANA_SERVER_URL"):
    print("Error: REANA_SERVER_URL and REANA_ACCESS_TOKEN must be set", file=sys.stderr)
    sys.exit(1)
if command == "version":
    print("0.9.6")
elif command == "create":
    spec = yaml.safe_load(Path(opt("-f")).read_text())
    number = len(list(STATE.glob(opt("-w") + ".*"))) + 1
    name = f"{{opt('-w')}}.{{number}}"
    workspace(name).mkdir(parents=True)
    (STATE / name / "spec.json").write_text(json.dumps(spec))
    print(name)
elif command == "upload":
    name = opt("-w")
    spec = json.loads((STATE / name / "spec.json").read_text())
    for item in spec["inputs"].get("files", []) + ["reana.yaml"]:
        (workspace(name) / item).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item, workspace(name) / item)
    for item in spec["inputs"].get("directories", []):
        shutil.copytree(item, workspace(name) / item, dirs_exist_ok=True)
    print(f"==> SUCCESS: uploaded to {{name}}")
elif command == "start":
    name = opt("-w")
    if MODE == "fail":
        (STATE / name / "rc").write_text("1")
    else:
        env = dict(os.environ, PATH=f"{{BIN}}{{os.pathsep}}{{os.environ['PATH']}}")
        env.pop("REANA_ACCESS_TOKEN")
        subprocess.Popen(["sh", "-c", f"{{BIN}}/snakemake --cores 2 > run.log 2>&1; "
                          f"echo $? > {{STATE / name / 'rc'}}"], cwd=workspace(name), env=env,
                         start_new_session=True)
    print(f"==> SUCCESS: {{name}} has been queued")
elif command == "status":
    name = opt("-w")
    rc = STATE / name / "rc"
    status = "running" if not rc.exists() else (
        "finished" if rc.read_text().strip() == "0" else "failed")
    print(json.dumps([{{"name": name.rsplit(".", 1)[0], "run_number": name.rsplit(".", 1)[1],
                       "created": "2026-01-01T00:00:00", "status": status}}]))
elif command == "logs":
    print(f"fake logs of {{opt('-w')}}")
elif command == "download":
    name, out, path = opt("-w"), Path(opt("-o")), argv[-1]
    source = workspace(name) / path
    if source.is_file():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, out / path)
    elif source.is_dir():  # REANA sends a directory as a zip archive
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out / "download.zip", "w") as archive:
            for member in sorted(source.rglob("*")):
                if member.is_file():
                    archive.write(member, member.relative_to(workspace(name)).as_posix())
    else:
        print(f"==> ERROR: File {{path}} could not be downloaded", file=sys.stderr)
        sys.exit(1)
    print(f"==> SUCCESS: File {{path}} downloaded to {{out}}.")
else:
    print(f"fake reana-client: unknown command {{command}}", file=sys.stderr)
    sys.exit(2)
'''


def write_fake_reana(path: Path) -> Path:
    """Write the fake ``reana-client`` (state under ``$FAKE_REANA_STATE``); return its path."""
    path.write_text(FAKE_REANA.format(python=sys.executable))
    path.chmod(0o755)
    return path


def calls(state: Path) -> list[dict[str, Any]]:
    """Every call the fake reana-client received, in order."""
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]
