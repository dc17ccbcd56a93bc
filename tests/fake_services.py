"""Stand-ins for the services reproduce talks to: a HEPData site and reana-client.

* :func:`serve_record` serves one record, in one or more versions, the way HEPData's server
  code does (``/record/ins<id>`` and ``/record/<recid>`` with ``?format=json[&version=N]``,
  ``?format=yaml&table=<name>`` redirecting to ``/download/table/<id>/<name>/<version>/yaml``,
  ``/download/table/<id>/<name>[/<version>]/yaml``, HTML error pages with status 200) on
  127.0.0.1, port 0.
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
from collections.abc import Iterator, Mapping
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


#: HEPData's ``SITE_URL`` default (hepdata/config.py): the site its record JSON links name.
HEPDATA_SITE_URL = "https://www.hepdata.net"
#: The formats HEPData's ``process_ctx`` links: ``['json'] + CFG_SUPPORTED_FORMATS`` without
#: 'original' (hepdata/config.py, hepdata/modules/records/utils/data_processing_utils.py).
LINK_FORMATS = ("json", "yaml", "root", "csv", "yoda", "yoda1", "yoda.h5")
ERROR_PAGE = ("<!DOCTYPE html><html><head><title>HEPData</title></head><body>"
              "<h2>Converter error encountered</h2><p>{title}</p><p>{description}</p>"
              "</body></html>")

Table = Mapping[str, Any] | str


def load_submission(folder: Path) -> dict[str, str]:
    """``{table name: the data file's text}`` of a HEPData submission folder, in its order."""
    docs = list(yaml.safe_load_all((folder / "submission.yaml").read_text()))
    return {doc["name"]: (folder / doc["data_file"]).read_text()
            for doc in docs if doc and "data_file" in doc}


@contextlib.contextmanager
def serve_record(*versions: Mapping[str, Table], inspire_id: int, recid: int,
                 site_url: str = HEPDATA_SITE_URL, processing: bool = False
                 ) -> Iterator[RecordServer]:
    """Serve one finished record whose version N holds the tables ``versions[N - 1]``.

    A table is HEPData's table YAML, as a mapping or as the data file's text (served as it
    is). The answers follow HEPData's server code (github HEPData/hepdata, commit
    2e5c877214c22e293759b30b00f6bc053933861d), cited per endpoint below. As there, the table
    links of the record JSON name no version and name ``site_url`` (HEPData's ``SITE_URL``,
    www.hepdata.net unless configured), not the address this server answers on.
    ``processing`` answers the record as a record being converted (an HTML page).
    """
    assert versions, "a record has at least one version"
    latest = len(versions)
    doi = f"10.17182/hepdata.{recid}"
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

        def _html(self, title: str, description: str = "") -> None:
            # converter/views.py display_error: render_template(error_page.html), status 200
            page = ERROR_PAGE.format(title=title, description=description)
            return self._send(200, page.encode(), "text/html; charset=utf-8")

        def do_GET(self) -> None:
            state.requests.append(self.path)
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            record = re.fullmatch(r"/record/(ins\d+|\d+)", parts.path)
            if record:
                return self._record_page(record.group(1), query)
            # converter/views.py download_data_table_by_inspire_id / download_data_table_by_recid:
            # /table/<id>/<path:table_name>[/<int:version>]/<format>
            table = re.fullmatch(r"/download/table/(ins\d+|\d+)/(.+?)(?:/(\d+))?/([\w.]+)",
                                 parts.path)
            if table:
                owner, name, number, fmt = table.groups()
                return self._table(owner, unquote(name), int(number) if number else None, fmt)
            return self._send(404, b"not found", "text/html")

        def _record_page(self, which: str, query: dict[str, str]) -> None:
            # records/views.py get_metadata_by_alternative_id (ins<id>) and metadata (<recid>):
            # an unknown id aborts with 404; a version that is not an integer means -1
            if which not in (f"ins{inspire_id}", str(recid)):
                return self._send(404, b"<html>Not Found</html>", "text/html")
            try:
                version = int(query.get("version", -1))
            except ValueError:
                version = -1
            # records/api.py render_record: -1 is the latest version; a version with no
            # HEPSubmission falls through to abort(404)
            if version == -1:
                version = latest
            if not 1 <= version <= latest:
                return self._send(404, b"<html>Not Found</html>", "text/html")
            if processing:  # render_record: publication_processing.html, status 200
                return self._send(200, b"<!DOCTYPE html><html><body>This record is being "
                                  b"processed</body></html>", "text/html")
            fmt = query.get("format", "html")
            if fmt in ("html", "json_ld"):
                return self._send(200, b"<!DOCTYPE html><html>record</html>", "text/html")
            if "table" in query:
                # render_record: redirect to converter.download_data_table_by_inspire_id with
                # the version and the table name ('%' and '\\' escaped)
                name = query["table"].replace("%", "%25").replace("\\", "%5C")
                return self._send(302, location=f"/download/table/ins{inspire_id}/"
                                  f"{quote(name, safe='/%')}/{version}/{fmt}")
            if fmt != "json":  # render_record: redirect to the whole submission's download
                return self._send(302, location=f"/download/submission/ins{inspire_id}/"
                                  f"{version}/{fmt}")
            body = json.dumps(self._record(version)).encode()
            return self._send(200, body, "application/json")

        def _table(self, owner: str, name: str, version: int | None, fmt: str) -> None:
            if owner not in (f"ins{inspire_id}", str(recid)):
                return self._html("No submission found",
                                  f"A submission with Inspire ID {owner} does not exist")
            # get_version_count: without a version, the latest
            version = latest if version is None else version
            tables = versions[version - 1] if 1 <= version <= latest else {}
            # the table by its name, or by its name without spaces if none was given
            found = name if name in tables else next(
                (t for t in tables if " " not in name and t.replace(" ", "") == name), None)
            if found is None:
                return self._html("No data submission found",
                                  f"A data submission with Inspire ID {inspire_id}, version "
                                  f"{version} and table name '{name}' does not exist")
            if fmt != "yaml":  # download_datatable: only YAML is served here
                return self._html(f"The {fmt} output format is not served by this test server")
            # download_datatable: send_file(dataresource.file_location): the data file as it is
            content = tables[found]
            text = content if isinstance(content, str) else yaml.safe_dump(dict(content),
                                                                           sort_keys=False)
            return self._send(200, text.encode(), "application/octet-stream")

        def _record(self, version: int) -> dict[str, Any]:
            # records/api.py format_submission + format_tables + process_data_tables, then
            # records/utils/data_processing_utils.py process_ctx (the format=json answer)
            entries = []
            for i, name in enumerate(versions[version - 1]):
                cleaned = name.replace("%", "%25").replace("\\", "%5C")
                entries.append({
                    "id": 1000 * version + i, "processed_name": "".join(name.split()),
                    "name": name, "location": f"Data from table {i + 1}",
                    "resources": [], "doi": f"{doi}.v{version}/t{i + 1}",
                    "description": name,
                    # process_ctx: '{site_url}/download/table/{_recid}/{name}/{format}': no
                    # version, so these serve the latest
                    "data": {fmt: f"{site_url}/download/table/ins{inspire_id}/{cleaned}/{fmt}"
                             for fmt in LINK_FORMATS}})
            return {"recid": recid, "version": version, "version_count": latest,
                    "status": "finished", "mode": "record", "record_type": "publication",
                    "overall_status": "finished",
                    "record": {"inspire_id": str(inspire_id), "recid": recid,
                               "title": "A test record",
                               # format_submission: hepdata_doi += '.v{version}'
                               "hepdata_doi": f"{doi}.v{version}"},
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
