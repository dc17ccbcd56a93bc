"""The request REANA receives when a user creates the workflow, built by REANA's own code.

``reana-client create`` (0.9.6) loads ``reana.yaml`` with reana-commons' loader, which builds
the Snakemake DAG and copies every rule's named inputs, params and outputs into the
specification, then JSON-encodes it and POSTs it (reana_client/api/client.py::create_workflow).
A callable in a rule's ``input:`` or ``params:`` cannot be encoded, and the client stops
before anything is sent; ``reana-client validate`` never encodes, so it does not see this.

These tests run the real clients, as a user does, in a staged copy holding only what
``reana.yaml`` declares, against the fake reana-server of ``tests/reana/fake_server.py``
(which follows reana-server's code endpoint by endpoint), and look at what arrived. For
REANA 0.95, whose client uploads a bundle that the server loads in a sandbox, they run
REANA 0.95's own reana-commons on the bundle as the sandbox does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import yaml

from .conftest import REPO, copy_checkout
from .reana.fake_server import (
    FakeReana,
    reana95_loader,
    serve_reana_09,
    serve_reana_095,
)

REANA_09 = REPO / ".venv-reana" / "bin"
REANA_095 = REPO / ".venv-reana95" / "bin"
TOKEN = "pubflow-test-token"  # a REANA 0.9 token is an opaque string
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwdWJmbG93In0.c2lnbmF0dXJl"  # 0.95 wants a JWT's shape
# Rules that run nothing (they only collect targets): REANA's loader leaves them out.
NO_SHELL = {"all", "publish"}

# The calls reana_client/cli/workflow.py::workflow_create makes, without the HTTP part.
DIRECT_09 = """
import json, sys
from reana_client.utils import load_validate_reana_spec
spec = load_validate_reana_spec(sys.argv[1], access_token=sys.argv[2], skip_validation=False,
                                server_capabilities=True)
with open(sys.argv[3], "w") as f:
    json.dump(json.loads(json.dumps(spec, sort_keys=True)), f)
"""


def _client_env(**extra: str) -> dict[str, str]:
    """This environment without any REANA settings or PYTHONPATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REANA_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _reana_09(fake: FakeReana, cwd: Path, *args: str, token: str = TOKEN
              ) -> subprocess.CompletedProcess[str]:
    """``reana-client`` 0.9.6 pointed at ``fake`` as its documentation says (two variables).

    Plain http needs no setting: reana-commons' BaseAPIClient (api_client.py) builds its
    bravado client with ``RequestsClient(ssl_verify=False)`` and reana-client's upload_file
    posts with ``verify=False``.
    """
    assert (REANA_09 / "reana-client").exists(), "run environments/setup.sh: it makes .venv-reana"
    env = _client_env(REANA_SERVER_URL=fake.url, REANA_ACCESS_TOKEN=token)
    return _run([str(REANA_09 / "reana-client"), *args], cwd, env)


def _reana_095(fake: FakeReana, cwd: Path, home: Path, *args: str
               ) -> subprocess.CompletedProcess[str]:
    """``reana-client`` 0.95.0a6 with a saved login for ``fake`` and a JWT in the environment.

    0.95 refuses ``REANA_SERVER_URL`` (reana_client/config.py::check_retired_environment) and
    reads the server from its credential store, which ``reana-client login`` would write.
    """
    assert (REANA_095 / "reana-client").exists(), \
        "run environments/setup.sh: it makes .venv-reana95"
    config = home / "reana-client.json"
    config.write_text(json.dumps({"active_server": fake.url, "servers": {fake.url: {}}}))
    env = _client_env(REANA_CLIENT_CONFIG=str(config), REANA_ACCESS_TOKEN=JWT, HOME=str(home))
    return _run([str(REANA_095 / "reana-client"), *args], cwd, env)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _steps(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The loaded workflow's steps by rule name (REANA builds the list from a set)."""
    steps = spec["workflow"]["specification"]["steps"]
    by_name = {step["name"]: step for step in steps}
    assert len(by_name) == len(steps), "two steps with the same name"
    return by_name


def _canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its steps keyed by name and dependencies as sorted lists.

    Both orders come from Python sets and dicts filled while Snakemake walks the DAG, so
    two loads of the same workflow may list them differently.
    """
    out = json.loads(json.dumps(spec))
    workflow = out["workflow"]["specification"]
    workflow["steps"] = _steps(out)
    workflow["job_dependencies"] = {job: sorted(deps) for job, deps in
                                    workflow["job_dependencies"].items()}
    return out


@dataclass
class Created:
    """``reana-client create`` and ``upload`` run in a staged copy against a fake server."""

    workdir: Path
    staged: set[str]
    fake: FakeReana
    create: subprocess.CompletedProcess[str]
    upload: subprocess.CompletedProcess[str] | None
    direct: dict[str, Any] | None

    @property
    def body(self) -> bytes:
        """The one body POSTed to /api/workflows (the test fails if there is not exactly one)."""
        posted = self.fake.accepted("POST", "/api/workflows")
        assert len(posted) == 1, (self.fake.exchanges, _output(self.create))
        return posted[0].body


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Created]:
    """The real workflow created on fake REANA 0.9 by reana-client 0.9.6, as a user does it.

    Then the files uploaded (``reana-client upload``), and the same specification loaded by
    calling reana-client's own functions directly.
    """
    workdir = copy_checkout(tmp_path_factory.mktemp("reana09") / "pubflow")
    staged = {p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if p.is_file()}
    with serve_reana_09(TOKEN) as fake:
        create = _reana_09(fake, workdir, "create", "-f", "reana.yaml", "-w", "pubflow")
        upload = direct = None
        if create.returncode == 0:
            upload = _reana_09(fake, workdir, "upload", "-w", "pubflow.1")
            out = workdir.parent / "direct.json"
            loaded = _run([str(REANA_09 / "python"), "-c", DIRECT_09,
                           str(workdir / "reana.yaml"), TOKEN, str(out)], workdir,
                          _client_env(REANA_SERVER_URL=fake.url))
            assert loaded.returncode == 0, _output(loaded)
            direct = json.loads(out.read_text())
        yield Created(workdir, staged, fake, create, upload, direct)


def _spec(created: Created) -> dict[str, Any]:
    assert created.create.returncode == 0, _output(created.create)
    return json.loads(created.body)


def _snakemake_09(workdir: Path, *args: str) -> str:
    """Snakemake 7.32.4 (REANA 0.9's) in ``workdir`` with the config REANA passes it."""
    result = _run([str(REANA_09 / "snakemake"), *args, "--configfile", "inputs/pubflow.yaml"],
                  workdir, _client_env())
    assert result.returncode == 0, _output(result)
    return result.stdout


# -- REANA 0.9: the JSON request ----------------------------------------------------------------


def test_create_posts_a_json_specification(created: Created) -> None:
    """`reana-client create` exits 0 and the server receives one JSON body, which it stores.

    Fails while any rule has a callable in ``input:``/``params:`` (the client then cannot
    encode the specification and sends nothing) or while the Snakefile cannot be loaded by
    REANA 0.9's Snakemake 7.32.4 on Python 3.8.
    """
    assert created.create.returncode == 0, _output(created.create)
    assert "pubflow.1" in created.create.stdout
    posted = created.fake.accepted("POST", "/api/workflows")
    assert [p.query.get("workflow_name") for p in posted] == ["pubflow"]
    assert posted[0].headers["Content-Type"].startswith("application/json")
    spec = json.loads(created.body)
    assert created.fake.find("pubflow.1").specification == spec
    # the client also asked what the cluster offers (server capabilities) and sent reana.yaml
    assert created.fake.accepted("GET", "/api/info")
    assert created.fake.find("pubflow.1").files["reana.yaml"] == (
        created.workdir / "reana.yaml").read_bytes()


def test_request_describes_every_rule(created: Created) -> None:
    """The request holds the Snakemake loader's description of every rule that runs.

    Each step has the rule's name, its named inputs, params and outputs, one shell command
    and an image; the steps are the rules Snakemake 7.32.4 lists, less those that run
    nothing; every output ``reana.yaml`` promises is some step's output.
    """
    spec = _spec(created)
    assert spec["workflow"]["type"] == "snakemake"
    assert spec["workflow"]["file"] == "Snakefile"
    steps = _steps(spec)
    listed = {line for line in _snakemake_09(created.workdir, "--list").splitlines()
              if re.fullmatch(r"\w+", line)}
    assert set(steps) == listed - NO_SHELL, (sorted(steps), sorted(listed))
    for name, step in steps.items():
        for key in ("inputs", "params", "outputs"):
            assert isinstance(step[key], dict), (name, key, step[key])
        assert step["outputs"], name
        assert len(step["commands"]) == 1 and step["commands"][0].strip(), name
        assert step["environment"], name
    produced = {path for step in steps.values() for value in step["outputs"].values()
                for path in ([value] if isinstance(value, str) else value)}
    promised = yaml.safe_load((created.workdir / "reana.yaml").read_text())["outputs"]["files"]
    assert set(promised) <= produced, sorted(set(promised) - produced)


def test_job_dependencies_are_snakemakes_rule_graph(created: Created) -> None:
    """The job dependencies REANA received are the edges of Snakemake 7.32.4's rule graph."""
    spec = _spec(created)
    dot = _snakemake_09(created.workdir, "--rulegraph")
    labels = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.MULTILINE))
    graph: dict[str, set[str]] = {name: set() for name in labels.values()}
    for needed, job in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.MULTILINE):
        graph[labels[job]].add(labels[needed])
    received = {job: set(deps) for job, deps in
                spec["workflow"]["specification"]["job_dependencies"].items()}
    assert received == graph


def test_parameters_are_the_config_file(created: Created) -> None:
    """``inputs.parameters`` arrives as the content of the config file reana.yaml names.

    reana.yaml says ``inputs.parameters.input: inputs/pubflow.yaml``; reana-commons'
    ``load_reana_spec`` (``load_input_parameters``) replaces ``inputs.parameters`` by that
    file, loaded, and the Snakefile gets the same file as its config.
    """
    raw = yaml.safe_load((created.workdir / "reana.yaml").read_text())
    assert raw["inputs"]["parameters"] == {"input": "inputs/pubflow.yaml"}
    config = yaml.safe_load((created.workdir / "inputs" / "pubflow.yaml").read_text())
    assert _spec(created)["inputs"]["parameters"] == config


def test_request_equals_reana_clients_own_load(created: Created) -> None:
    """What arrived equals `load_validate_reana_spec` + `json.dumps(sort_keys=True)` called
    directly, as reana_client/cli/workflow.py::workflow_create and api/client.py call them."""
    assert created.direct is not None, _output(created.create)
    assert _canonical(_spec(created)) == _canonical(created.direct)


def test_upload_sends_the_declared_inputs(created: Created) -> None:
    """`reana-client upload` puts exactly the declared inputs, byte for byte, in the workspace."""
    assert created.upload is not None and created.upload.returncode == 0, (
        _output(created.upload) if created.upload else _output(created.create))
    inputs = yaml.safe_load((created.workdir / "reana.yaml").read_text())["inputs"]
    folders = tuple(f"{directory.rstrip('/')}/" for directory in inputs["directories"])
    expected = {"reana.yaml", *inputs["files"]} | {
        name for name in created.staged if name.startswith(folders)}
    files = created.fake.find("pubflow.1").files
    assert set(files) == expected
    for name, content in files.items():
        assert content == (created.workdir / name).read_bytes(), name


def test_fake_server_refuses_what_reana_server_refuses(tmp_path: Path) -> None:
    """The fake is no rubber stamp: a wrong token, no token, a body that is not JSON.

    reana_server/decorators.py::signin_required answers 401 without a token and 403 for an
    unknown one (the client exits 1 and nothing is stored); create_workflow answers 500 for
    a body that does not decode and for one that is not application/json, 400 for a
    specification without ``workflow``, 403 for a workflow name with a dot.
    """
    (tmp_path / "reana.yaml").write_text(
        "version: 0.9.0\nworkflow:\n  type: serial\n  specification:\n    steps:\n"
        "      - environment: docker.io/library/python:3.11-slim\n"
        "        commands: [echo hello]\n")
    with serve_reana_09(TOKEN) as fake:
        wrong = _reana_09(fake, tmp_path, "create", "-w", "x", "--skip-validation",
                          token="not-the-token")
        assert wrong.returncode == 1 and "Token not valid." in _output(wrong), _output(wrong)
        assert not fake.workflows

        def post(query: str, body: bytes, kind: str) -> int:
            request = Request(f"{fake.url}/api/workflows?{query}", data=body,
                              headers={"Content-Type": kind}, method="POST")
            try:
                with urlopen(request) as answer:
                    return int(answer.status)
            except HTTPError as error:
                return error.code

        good = json.dumps({"workflow": {"type": "serial"}}).encode()
        assert post("workflow_name=x", good, "application/json") == 401
        token = f"access_token={TOKEN}&workflow_name=x"
        assert post(token, b"{not json", "application/json") == 500
        assert post(token, good, "text/plain") == 500
        assert post(token, b"{}", "application/json") == 400
        assert post(f"access_token={TOKEN}&workflow_name=x.1", good, "application/json") == 403
        assert not fake.workflows
        assert post(token, good, "application/json") == 201
        assert [w.full_name for w in fake.workflows] == ["x.1"]


# -- the negative control: a callable in input: ------------------------------------------------

TINY_SNAKEFILE = """\
configfile: "config.yaml"

rule all:
    input: "out.txt"

rule make:
    input: src={src}
    output: out="out.txt"
    params: greeting=config["greeting"]
    container: "docker://docker.io/library/python:3.11-slim"
    shell: "echo {{params.greeting}} | cat - {{input.src}} > {{output.out}}"
"""
TINY_REANA = """\
version: 0.9.0
inputs:
  files: [Snakefile, in.txt, config.yaml]
  parameters:
    input: config.yaml
workflow:
  type: snakemake
  file: Snakefile
outputs:
  files: [out.txt]
"""


def _tiny_workflow(where: Path, src: str) -> Path:
    """A one-rule Snakemake workflow and its reana.yaml; ``src`` is the rule's input."""
    where.mkdir(parents=True)
    (where / "Snakefile").write_text(TINY_SNAKEFILE.format(src=src))
    (where / "reana.yaml").write_text(TINY_REANA)
    (where / "in.txt").write_text("world\n")
    (where / "config.yaml").write_text("greeting: hello\n")
    return where


@pytest.mark.parametrize(("src", "sent"), [('"in.txt"', True),
                                           ('lambda wildcards: "in.txt"', False)],
                         ids=["plain-input", "lambda-input"])
def test_callable_input_stops_reana_client_09(tmp_path: Path, src: str, sent: bool) -> None:
    """The same tiny workflow is created with a plain input and refused with a lambda.

    With the lambda, reana-client 0.9.6 fails with "is not JSON serializable" and the server
    receives no workflow at all: this is what the tests above catch on the real workflow.
    """
    workdir = _tiny_workflow(tmp_path / "tiny", src)
    with serve_reana_09(TOKEN) as fake:
        result = _reana_09(fake, workdir, "create", "-f", "reana.yaml", "-w", "tiny")
    posted = [e for e in fake.exchanges if e.method == "POST"]
    if sent:
        assert result.returncode == 0, _output(result)
        step = _steps(json.loads(fake.accepted("POST", "/api/workflows")[0].body))["make"]
        assert step["inputs"] == {"src": "in.txt"}
        assert step["params"] == {"greeting": "hello"}
        assert step["outputs"] == {"out": "out.txt"}
    else:
        assert result.returncode == 1
        assert "is not JSON serializable" in _output(result), _output(result)
        assert posted == []
        assert not fake.workflows


# -- REANA 0.95: the server loads the bundle ---------------------------------------------------


def _load_095(workdir: Path) -> dict[str, Any]:
    """REANA 0.95's loading (:data:`LOAD_095`) run with ``.venv-reana95`` in ``workdir``."""
    assert (REANA_095 / "python").exists(), "run environments/setup.sh: it makes .venv-reana95"
    return reana95_loader(REANA_095 / "python")(workdir)


def test_reana095_loader_encodes_the_workflow(created: Created, tmp_path: Path) -> None:
    """REANA 0.95's loader (run server-side) loads the workflow and JSON-encodes it.

    reana-server 0.95 hands the uploaded bundle to reana-workflow-validator, which calls
    ``reana_commons.specification.load_reana_spec`` and prints the result with
    ``json.dumps``; the stored specification has the same rules as the 0.9.6 request.
    """
    workdir = copy_checkout(tmp_path / "pubflow")
    result = _load_095(workdir)
    report = result.get("report", {})
    assert result.get("exit_code") == 0, report.get("error")
    spec = report["reana_specification"]
    assert json.loads(json.dumps(spec)) == spec
    assert result["verdict"]["valid"], result["verdict"]
    assert set(_steps(spec)) == set(_steps(_spec(created)))


def test_reana095_client_creates_the_workflow(created: Created, tmp_path: Path) -> None:
    """`reana-client create` 0.95.0a6 uploads a bundle that fake REANA 0.95 loads and stores.

    The server stores the same steps (inputs, params, outputs, commands, images) as REANA 0.9
    received from 0.9.6; 0.95's loader (Snakemake >= 8) records no job dependencies.
    """
    workdir = copy_checkout(tmp_path / "pubflow")
    (tmp_path / "home").mkdir()
    (tmp_path / "staging").mkdir()
    loader = reana95_loader(REANA_095 / "python")
    with serve_reana_095(JWT, loader, tmp_path / "staging") as fake:
        result = _reana_095(fake, workdir, tmp_path / "home", "create", "-f", "reana.yaml",
                            "-w", "pubflow")
    assert result.returncode == 0, _output(result)
    assert "pubflow.1" in result.stdout
    bundle = fake.accepted("POST", "/api/workflows")[0]
    assert bundle.headers["Content-Type"].startswith("multipart/form-data")
    stored = fake.find("pubflow.1").specification
    assert stored["workflow"]["specification"]["job_dependencies"] == {}
    assert _steps(stored) == _steps(_spec(created))
    assert stored["inputs"]["parameters"] == _spec(created)["inputs"]["parameters"]


def test_callable_input_stops_reana_095(tmp_path: Path) -> None:
    """REANA 0.95 refuses a lambda in ``input:`` too, server-side: the load is not JSON.

    The tiny workflow of the 0.9.6 control, lambda variant: its loader's
    reana_commons.validation.utils.validate_json_tree rejects the function before
    ``json.dumps``; the server answers 400 and stores nothing; reana-client 0.95 exits 1.
    """
    workdir = _tiny_workflow(tmp_path / "tiny", 'lambda wildcards: "in.txt"')
    (tmp_path / "home").mkdir()
    (tmp_path / "staging").mkdir()
    with serve_reana_095(JWT, reana95_loader(REANA_095 / "python"), tmp_path / "staging") as fake:
        result = _reana_095(fake, workdir, tmp_path / "home", "create", "-w", "tiny")
    assert result.returncode == 1, _output(result)
    assert "cannot be represented as JSON" in _output(result), _output(result)
    assert [e.status for e in fake.exchanges if e.method == "POST"] == [400]
    assert not fake.workflows
