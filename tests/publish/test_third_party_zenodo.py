"""The fake Zenodo serves a client written by others: zenodo-client 0.4.2 from the package index.

zenodo-client (in ``.venv-zenodo-client``, made by ``environments/setup.sh``) authenticates
with the ``access_token`` query parameter, sends licence ids as given (here lower-case), puts
back the metadata it read from a new version's draft, and never deletes an inherited file. It
has no base-URL option, so the script below points its three URL attributes at the fake. If
the fake were stricter than Zenodo on any of this, the client would fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from .conftest import REPO, ZENODO_TOKEN

CLIENT_PYTHON = REPO / ".venv-zenodo-client" / "bin" / "python"

#: Run in the client's venv: create + upload + publish, then a new version with one file
#: changed and one added, published. Prints the ids it was given.
SCRIPT = r"""
import json, sys
from zenodo_client import Creator, Metadata, Zenodo

url, token, first, second, changed, added = sys.argv[1:]
z = Zenodo(access_token=token, sandbox=True)
# zenodo-client knows only zenodo.org and sandbox.zenodo.org: aim its URLs at the fake
z.base = url
z.api_base = url + "/api"
z.depositions_base = z.api_base + "/deposit/depositions"
metadata = Metadata(title="Third-party deposit", upload_type="dataset",
                    description="A deposit made by zenodo-client",
                    creators=[Creator(name="Doe, Jane", affiliation="CERN")],
                    license="cc-by-4.0", version="1")
published = z.create(metadata, [first, second], publish=True).json()
updated = z.update(str(published["id"]), [changed, added], publish=True).json()
print(json.dumps({"first": published["id"], "second": updated["id"],
                  "first_status": published["state"], "second_status": updated["state"]}))
"""


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_zenodo_client_creates_publishes_and_versions_on_the_fake(zenodo, tmp_path):
    assert CLIENT_PYTHON.exists(), "no .venv-zenodo-client: run `bash environments/setup.sh`"
    first = {"data.csv": b"x,y\n1,2\n", "readme.txt": b"version one\n"}
    second = {"data.csv": b"x,y\n1,2\n3,4\n", "extra.json": b'{"k": 1}\n'}
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    for folder, files in (("v1", first), ("v2", second)):
        for name, data in files.items():
            (tmp_path / folder / name).write_bytes(data)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "PYSTOW_HOME": str(tmp_path / "pystow"), "NO_PROXY": "127.0.0.1"}
    run = subprocess.run(
        [str(CLIENT_PYTHON), "-c", SCRIPT, zenodo.url, ZENODO_TOKEN,
         str(tmp_path / "v1/data.csv"), str(tmp_path / "v1/readme.txt"),
         str(tmp_path / "v2/data.csv"), str(tmp_path / "v2/extra.json")],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    ids = json.loads(run.stdout.strip().splitlines()[-1])
    assert ids["first_status"] == ids["second_status"] == "done"

    # exactly one concept record with two published versions
    v1, v2 = sorted(zenodo.depositions.values(), key=lambda d: d.id)
    assert (v1.id, v2.id) == (ids["first"], ids["second"])
    assert v1.conceptrecid == v2.conceptrecid and v2.previous == v1.id
    assert v1.submitted and v2.submitted and (v1.publishes, v2.publishes) == (1, 1)
    # the files and their md5s: the new version inherited readme.txt, data.csv was replaced
    assert zenodo.files_of(v1) == {k: _md5(v) for k, v in first.items()}
    assert zenodo.files_of(v2) == {"data.csv": _md5(second["data.csv"]),
                                   "extra.json": _md5(second["extra.json"]),
                                   "readme.txt": _md5(first["readme.txt"])}
    # the licence went in lower case and was accepted as Zenodo's cc-by-4.0
    assert v1.metadata["license"] == "cc-by-4.0"
    # every request carried the token in the query string, none in a header
    assert zenodo.log and all(f"access_token={ZENODO_TOKEN}" in path for _, path in zenodo.log)
    assert not any("authorization" in h for h in zenodo.headers_seen)
    # the calls a new version takes: the client asked for it once, then re-sent the draft's
    # metadata as it read it (reserved DOI and all)
    newversions = [p for m, p in zenodo.log if m == "POST" and "/actions/newversion" in p]
    assert len(newversions) == 1 and f"/{v1.id}/actions/newversion" in newversions[0]
    assert any(m == "PUT" and f"/deposit/depositions/{v2.id}?" in p for m, p in zenodo.log)


def test_the_client_venv_holds_the_pinned_release():
    """The test above is about zenodo-client 0.4.2; a silently different release would test
    something else."""
    assert CLIENT_PYTHON.exists(), "no .venv-zenodo-client: run `bash environments/setup.sh`"
    version = subprocess.run(
        [str(CLIENT_PYTHON), "-c",
         "import importlib.metadata as m; print(m.version('zenodo-client'))"],
        capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    pin = Path(REPO / "environments/setup.sh").read_text().split('zenodo_client_pin="')[1]
    assert version == pin.split('"')[0].split("==")[1] == "0.4.2"
