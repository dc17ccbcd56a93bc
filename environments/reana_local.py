"""Run pubflow's workflow as REANA 0.9 would, on this machine: every rule in its own image.

Runs with what REANA 0.9 runs: Python 3.8, Snakemake 7.32.4, reana-client 0.9.6 and
reana-commons 0.9.x (all in ``.venv-reana``), and needs Docker (``bash
environments/build-images.sh`` builds the images and starts the daemon)::

    .venv-reana/bin/python environments/reana_local.py run              # the whole workflow
    .venv-reana/bin/python environments/reana_local.py run results/fit/results.json
    .venv-reana/bin/python environments/reana_local.py run --secret TOKEN  # secrets-add --env
    .venv-reana/bin/python environments/reana_local.py check            # images vs rules only

``run`` does what REANA does with a Snakemake workflow, following REANA's own code (each
function below names the REANA file and function it follows):

- the workspace holds what ``reana-client run`` uploads: the specification file, then
  ``inputs.files`` and the files of ``inputs.directories`` that ``.gitignore`` and
  ``.reanaignore`` do not match, by reana-client's own upload command (only its HTTP transfer
  is replaced); it is created with REANA's umask (0002) and handed to REANA's runtime uid as
  REANA does, so it is writable by uid 1000 and group 0; the config is the YAML named by
  ``inputs.parameters.input``;
- Snakemake 7.32.4 builds the DAG there and hands each job to a cluster executor, the same
  trick as REANA's engine (``scheduler.GenericClusterExecutor`` replaced by a subclass);
  rules without a command (``all``) run in the engine, as on REANA;
- each job runs ``bash -c "cd <workspace> && <the rule's shell command>"`` in the image its
  ``container:`` names, with the workspace mounted at the same path, no network, as uid 1000
  and gid 0 (REANA's runtime user; a rule's ``kubernetes_uid`` of 100 or more instead), with
  ``REANA_WORKSPACE``, ``REANA_WORKFLOW_UUID`` (a fresh uuid4 per run) and the ``--secret``
  variables in its environment, and the memory limit of its ``resources:
  kubernetes_memory_limit`` (swap included; REANA's default 4Gi when the rule sets none),
  which must have REANA's format and stay under ``--max-memory``;
- like REANA 0.9's executor, nothing creates a job's output or log directories before it
  runs, and the command carries no ``set -euo pipefail``. ``--create-dirs`` makes them as
  local Snakemake does, for a workflow that is not ready for REANA yet.

A failed job ends the run with one line per failure naming the rule and the cause, read from
the job's own stdout and stderr (``docker logs``: what ``reana-client logs`` shows, never the
rule's ``log:`` file): a module the image lacks, an input that ``reana.yaml`` does not
declare, the memory limit exceeded, a memory limit REANA refuses.

``check`` runs no workflow: for every rule of the Snakefile (the default target's or not) it
checks that the rule is a shell rule with a ``container:`` and a memory limit REANA accepts,
that the image is on this machine and has ``bash``, and that it imports, as REANA's runtime
user and with the checkout's code, the module of each ``python -m <module>`` in the command
and every third-party module that module's own code imports, inside functions too (the steps
import their heavy libraries lazily). Optional imports (``try: ... except ImportError``) the
image lacks are reported as notes. About a second per image.

This file must run on Python 3.8 (REANA 0.9's engine) and must not import pubflow's analysis
modules: it runs in REANA's environment. reana-client and reana-commons are imported only
inside the functions that use them, so that the tests can load this file in the analysis
environment for its pure helpers.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections import namedtuple
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCKER = "/usr/bin/docker"  # the daemon's own client: another `docker` on PATH may want buildx
# REANA's Helm chart defaults (reanahub/reana helm/reana/README.md, 0.9.4 and 0.95):
# `kubernetes_jobs_memory_limit` 4Gi, given to a job that sets no kubernetes_memory_limit;
# `kubernetes_jobs_max_user_memory_limit` None, i.e. no maximum. The job controller reads them
# from these environment variables (reana_job_controller/config.py), and so does this runner.
REANA_DEFAULT_MEMORY_LIMIT = "4Gi"
MEMORY_LIMIT_ENV = "REANA_KUBERNETES_JOBS_MEMORY_LIMIT"
MAX_MEMORY_LIMIT_ENV = "REANA_KUBERNETES_JOBS_MAX_USER_MEMORY_LIMIT"
# What REANA's job controller sets itself (reana_job_controller/job_manager.py,
# JobManager._extend_env_vars): a --secret must not shadow them.
REANA_JOB_VARIABLES = ("REANA_WORKSPACE", "REANA_WORKFLOW_UUID")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DOCKER_PREFIX = "docker://"


class ReanaLocalError(Exception):
    """A problem to report in one line, without a traceback."""


# --- What REANA's own code says (reana-commons, imported when needed) ------------------------


def runtime_user() -> tuple[int, int]:
    """REANA's runtime uid and gid for jobs: 1000 and 0.

    reana-job-controller's ``kubernetes_job_manager.py`` (``KubernetesJobManager.execute``)
    puts ``run_as_user=self.kubernetes_uid`` and ``run_as_group=WORKFLOW_RUNTIME_USER_GID`` in
    every job pod's security context, both from ``reana_commons/config.py``
    (``WORKFLOW_RUNTIME_USER_UID`` = 1000, ``WORKFLOW_RUNTIME_USER_GID`` = 0, overridable by
    environment variables of the same names, which this reads as REANA does).
    """
    from reana_commons.config import WORKFLOW_RUNTIME_USER_GID, WORKFLOW_RUNTIME_USER_UID

    return int(WORKFLOW_RUNTIME_USER_UID), int(WORKFLOW_RUNTIME_USER_GID)


def job_uid(kubernetes_uid: Any, default: int) -> int:
    """The uid a job runs as: ``KubernetesJobManager.set_user_id`` (reana-job-controller
    ``kubernetes_job_manager.py``) takes a rule's ``kubernetes_uid`` only if it is 100 or
    more ("UIDs < 100 are refused for security"), else the runtime uid."""
    if kubernetes_uid and int(kubernetes_uid) >= 100:
        return int(kubernetes_uid)
    return default


def workspace_umask() -> int:
    """``REANA_WORKFLOW_UMASK`` (0002, reana_commons/config.py): the umask with which
    reana-workflow-controller creates a workspace (``rest/utils.py``,
    ``create_workflow_workspace``) and under which the Snakemake engine runs
    (reana-workflow-engine-snakemake ``cli.py``): everything in it is group-writable."""
    from reana_commons.config import REANA_WORKFLOW_UMASK

    return int(REANA_WORKFLOW_UMASK)


def memory_limit_problem(value: Any, maximum: str | None) -> str | None:
    """Why REANA would refuse a job's ``kubernetes_memory_limit``, or None if it accepts it.

    Follows reana-job-controller 0.9.4 ``kubernetes_job_manager.py``,
    ``KubernetesJobManager.set_memory_limit`` (unchanged in 0.95), calling the reana-commons
    functions it calls: ``validate_kubernetes_memory`` (the regular expression
    ``KUBERNETES_MEMORY_FORMAT``: a number of bytes, or a number with a unit E, P, T, G, M or
    K, optionally followed by ``i``) and ``kubernetes_memory_to_bytes`` against the maximum.
    Before that, the job controller's request schema (``schemas.py``, ``JobRequest``:
    ``kubernetes_memory_limit = fields.Str``) refuses anything that is not a string. No value
    (None or "") is not validated: the job gets the cluster's default limit.
    """
    from reana_commons.job_utils import kubernetes_memory_to_bytes, validate_kubernetes_memory

    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return ("not a string: REANA's job controller takes it only as a string with a unit, "
                'e.g. "2Gi" or "512M"')
    if not validate_kubernetes_memory(value):
        return ("wrong format: REANA takes a number of bytes or a number with a unit E, P, T, "
                'G, M or K, optionally followed by i (e.g. "2Gi", "512M")')
    if maximum and kubernetes_memory_to_bytes(value) > kubernetes_memory_to_bytes(maximum):
        return (f"exceeds the maximum {maximum} (--max-memory; on a cluster "
                f"{MAX_MEMORY_LIMIT_ENV}): REANA's job controller refuses the job")
    return None


def memory_refusal(rule: str, value: Any, maximum: str | None) -> str | None:
    """The one line naming the rule and the value, if REANA would refuse the value."""
    problem = memory_limit_problem(value, maximum)
    if problem is None:
        return None
    return f"rule {rule}: REANA refuses kubernetes_memory_limit={value!r}: {problem}"


def memory_limit_bytes(value: str) -> int:
    """A memory limit REANA accepts, in bytes (``kubernetes_memory_to_bytes``, reana-commons
    ``job_utils.py``; it gives a float for a unit, Docker wants an integer)."""
    from reana_commons.job_utils import kubernetes_memory_to_bytes

    return int(kubernetes_memory_to_bytes(value))


def secret_arguments(names: list[str], environ: Mapping[str, str]) -> list[str]:
    """``docker run`` arguments that pass each secret by name: ``--env NAME`` makes Docker copy
    the value from its own environment (the runner's), so it is never on a command line.

    REANA passes every secret added with ``reana-client secrets-add --env NAME=VALUE`` to every
    job as an environment variable of that name (reana-commons ``k8s/secrets.py``,
    ``REANAUserSecretsStore.get_env_secrets_as_k8s_spec``, added by
    ``KubernetesJobManager.execute`` to the job container's ``env``).
    """
    arguments: list[str] = []
    for name in dict.fromkeys(names):
        if not ENV_NAME.fullmatch(name):
            raise ReanaLocalError(f"--secret {name!r}: not an environment variable name")
        if name in REANA_JOB_VARIABLES:
            raise ReanaLocalError(f"--secret {name}: REANA sets {name} itself")
        if name not in environ:
            raise ReanaLocalError(f"--secret {name}: {name} is not set in this environment "
                                  "(export it first: the jobs get it by name, not by value)")
        arguments += ["--env", name]
    return arguments


# --- What reana.yaml declares, uploaded as reana-client does ---------------------------------


def load_spec(path: Path) -> dict[str, Any]:
    """Load ``reana.yaml`` and check the parts this runner uses."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ReanaLocalError(f"{path}: {err.strerror}") from err
    workflow = spec.get("workflow", {}) if isinstance(spec, dict) else {}
    if workflow.get("type") != "snakemake" or not workflow.get("file"):
        raise ReanaLocalError(f"{path}: workflow.type must be 'snakemake' with a workflow.file")
    return spec


def declared(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The files and the directories that reana.yaml asks reana-client to upload."""
    inputs = spec.get("inputs") or {}
    return list(inputs.get("files") or []), list(inputs.get("directories") or [])


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """``contextlib.chdir`` (Python 3.11) for Python 3.8."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def upload_like_reana_client(source: Path, spec: dict[str, Any], spec_file: str | None,
                             workspace: Path) -> list[str]:
    """Put into ``workspace`` what ``reana-client run`` would upload from ``source``, with
    reana-client's own code; the workspace-relative names stored.

    ``reana-client run`` creates the workflow, which uploads the specification file
    (reana_client/cli/workflow.py, ``workflow_create``: ``ctx.invoke(upload_files,
    filenames=(specification_filename,))``), then runs ``upload`` without sources
    (reana_client/cli/files.py, ``upload_files``): ``inputs.files`` as they are, and the files
    of ``inputs.directories`` less those that ``.gitignore`` and ``.reanaignore`` of the
    current directory match (its ``_filter_files`` with ``pathspec`` gitwildmatch), each sent
    by ``reana_client.api.client.upload_to_server`` (which skips symbolic links and refuses
    ``..``). That command is called here unchanged, in ``source``; only two calls to the
    server are replaced: ``get_workflow_specification`` answers with ``spec``, and
    ``upload_file`` (the HTTP POST) stores the file as the server does
    (reana-workflow-controller ``rest/workflows_workspace.py``, ``upload_file``: the name made
    relative to ``/``, its parent directories made, the bytes written; no mode or time kept).
    """
    from unittest import mock

    from reana_client.api import client as api
    from reana_client.cli.files import upload_files

    stored: list[str] = []

    def store(workflow: str, file_: Any, file_name: str, access_token: str) -> dict[str, str]:
        relative = PurePosixPath(file_name)
        if relative.is_absolute():
            relative = relative.relative_to("/")
        target = workspace.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as dst:
            shutil.copyfileobj(file_, dst)
        stored.append(relative.as_posix())
        return {"message": f"{file_name} has been successfully uploaded."}

    def specification(workflow: str, access_token: str) -> dict[str, Any]:
        return {"specification": spec}

    # The command reads the server URL and token only to talk to the server, which it never
    # reaches here; its messages (one per file) are kept out of the run's output.
    uploads = [[spec_file]] if spec_file else []
    uploads.append([])
    output = io.StringIO()
    with _working_directory(source), \
            mock.patch.dict(os.environ, {"REANA_SERVER_URL": "https://reana-local.invalid"}), \
            mock.patch.object(api, "upload_file", store), \
            mock.patch.object(api, "get_workflow_specification", specification), \
            contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        for sources in uploads:
            try:
                upload_files.main(["--workflow", "reana-local", "--access-token", "local",
                                   *sources], prog_name="reana-client upload",
                                  standalone_mode=False)
            except SystemExit as err:
                if err.code:
                    lines = [line for line in output.getvalue().splitlines() if line.strip()]
                    raise ReanaLocalError("reana-client upload failed: " + (
                        lines[-1].strip() if lines else f"exit {err.code}")) from None
    return stored


def make_workspace(source: Path, spec: dict[str, Any], workspace: Path,
                   spec_file: str | None = "reana.yaml") -> Path:
    """Create ``workspace`` holding what reana-client would upload from ``source``.

    Made under REANA's umask (0002), like reana-workflow-controller's
    ``create_workflow_workspace``: directories 0775, files 0664. Unlike reana-client (which
    skips a declared path that does not exist without a word), a missing declared path is an
    error here, and so is a workflow file that nothing uploads (REANA's engine could not read
    it).
    """
    if workspace.exists() and any(workspace.iterdir()):
        raise ReanaLocalError(f"{workspace}: the workspace must be new or empty")
    files, directories = declared(spec)
    for name in files:
        if not (source / name).is_file():
            raise ReanaLocalError(f"reana.yaml declares the file {name}, which {source} lacks")
    for name in directories:
        if not (source / name).is_dir():
            raise ReanaLocalError(
                f"reana.yaml declares the directory {name}, which {source} lacks")
    with _umask(workspace_umask()):
        workspace.mkdir(parents=True, exist_ok=True)
        workspace.chmod(0o777 & ~workspace_umask())  # mkdtemp makes it 0700
        upload_like_reana_client(source, spec, spec_file, workspace)
    if not (workspace / spec["workflow"]["file"]).is_file():
        raise ReanaLocalError(
            f"reana.yaml does not declare the workflow file {spec['workflow']['file']} "
            "(inputs.files or inputs.directories): reana-client would not upload it and "
            "REANA's engine could not read it")
    return workspace.resolve()


def hand_over(workspace: Path, uid: int, gid: int) -> tuple[int, int] | None:
    """Make ``workspace`` writable by jobs that run as ``uid``:``gid``; the (uid, gid) that
    directories made later must get, or None.

    As root, what REANA does: reana-workflow-controller (``workflow_run_manager.py``,
    ``_create_job_controller_startup_cmd``) runs ``chown -R <WORKFLOW_RUNTIME_USER_UID>
    <workspace>`` and leaves the group, which is root's (gid 0) for files the server wrote;
    with the umask 0002 they are group-writable. Not as root, the jobs cannot own the
    workspace (and you must be able to delete it afterwards): it keeps your uid and group, its
    directories get the set-group-id bit so that what the jobs make inherits that group, and
    the jobs get that group as a supplementary group and REANA's umask (``job_command``).
    """
    if os.geteuid() == 0:
        for path in [workspace, *workspace.rglob("*")]:
            os.chown(path, uid, gid, follow_symlinks=False)  # gid 0: root's, as on REANA
        return (uid, gid)
    for path in [workspace, *workspace.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o2070)
        elif path.is_file() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o060)
    return None


def workflow_config(source: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The Snakemake config REANA passes: the YAML named by ``inputs.parameters.input``."""
    import yaml

    parameters = (spec.get("inputs") or {}).get("parameters") or {}
    if "input" not in parameters:
        return dict(parameters)
    with open(source / parameters["input"]) as f:
        return yaml.safe_load(f) or {}


def parse_config_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each VALUE read as YAML, as ``snakemake --config`` takes them."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ReanaLocalError(f"--config {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return overrides


# --- Rules, images ---------------------------------------------------------------------------


def image_of(container_img: str | None) -> str | None:
    """The image REANA runs: the rule's ``container:`` with ``docker://`` removed, as
    reana-workflow-engine-snakemake's ``executor.py`` (``_get_container_image``) does."""
    if not container_img:
        return None
    return container_img.replace(DOCKER_PREFIX, "")


def image_exists(image: str) -> bool:
    return subprocess.run([DOCKER, "image", "inspect", image], capture_output=True,
                          check=False).returncode == 0


def _stdlib_module_names() -> frozenset[str]:
    """The standard library's top-level module names.

    ``sys.stdlib_module_names`` (3.10+) is read with ``getattr`` because Python 3.8 lacks
    it; there the standard library's directories are listed instead. A name missed here only
    makes ``check`` import a standard module in the image, which succeeds.
    """
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return frozenset(names)
    found = set(sys.builtin_module_names)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for directory in (stdlib, stdlib / "lib-dynload"):
        for path in directory.iterdir() if directory.is_dir() else []:
            if path.name == "site-packages":
                continue
            if path.suffix in (".py", ".so"):
                found.add(path.name.split(".")[0])
            elif (path / "__init__.py").is_file():
                found.add(path.name)
    return frozenset(found)


STDLIB_MODULES = _stdlib_module_names()


# Run in each image by `check`, as REANA's runtime user, in the checkout (first on sys.path, as
# a job's `python -m` has its workspace): for each (rule, module) of the arguments, this file's
# scan_imports reads the module's code with the image's own Python (the steps may use syntax
# that the engine's Python 3.8 cannot parse), then every module found is imported. Prints one
# line per problem: rule (with "?" for an optional import), module, error.
IMAGE_PROBE = """\
import importlib, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import reana_local
del sys.path[0]
results = {}
for rule, module in zip(sys.argv[2::2], sys.argv[3::2]):
    try:
        required, optional = reana_local.scan_imports(Path.cwd(), module)
    except (OSError, SyntaxError, ValueError) as err:
        print(f"{rule}\\t{module}\\tscan: {type(err).__name__}: {err}")
        continue
    for names, mark in ((required, ""), (optional, "?")):
        for name in sorted(names):
            if name not in results:
                try:
                    importlib.import_module(name)
                    results[name] = None
                except Exception as err:
                    results[name] = f"{type(err).__name__}: {err}"
            if results[name]:
                print(f"{rule}{mark}\\t{name}\\t{results[name]}")
"""


def python_modules(command: str) -> list[str]:
    """The modules a shell command runs with ``python -m``."""
    return re.findall(r"\bpython3?(?:\.\d+)?\s+-m\s+([\w.]+)", command)


def _names(node: ast.AST) -> set[str]:
    """The names and attribute names in an expression (``typing.TYPE_CHECKING`` gives
    ``typing`` and ``TYPE_CHECKING``); ``ast.unparse`` needs Python 3.9."""
    return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
            if isinstance(n, (ast.Name, ast.Attribute))}


def _guarded(parents: list[ast.AST], node: ast.AST) -> bool:
    """Whether an import is optional: under ``if TYPE_CHECKING`` or in a ``try`` whose
    ``except`` catches ``ImportError``."""
    for parent in parents:
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in _names(parent.test):
            return True
        if isinstance(parent, ast.Try) and any(
                handler.type is not None
                and _names(handler.type) & {"ImportError", "ModuleNotFoundError"}
                for handler in parent.handlers) and any(
                node is child or node in ast.walk(child) for child in parent.body):
            return True
    return False


def _module_file(source: Path, name: str) -> Path | None:
    base = source.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def imported_modules(source: Path, module: str) -> set[str]:
    """What to import to prove that an image can run ``python -m <module>``."""
    return scan_imports(source, module)[0]


def scan_imports(source: Path, module: str) -> tuple[set[str], set[str]]:
    """What to import to prove that an image can run ``python -m <module>``, and the
    third-party modules its own code imports optionally (``try``/``except ImportError``).

    Read from the checkout's files, never imported here. The command's own code (the module,
    or every module of its package, its ``__main__`` included) is read whole, imports inside
    functions too, since the steps import their heavy libraries lazily; the project's other
    modules that it imports are listed to be imported for real (which runs their top-level
    imports), not read further: a helper's lazy import serves other commands. The result:
    the project modules (``__main__`` left out: importing it would run the command) and the
    top-level names of third-party modules (standard library left out).
    """
    package = module.split(".")[0]
    is_package = (source.joinpath(*module.split(".")) / "__init__.py").is_file()

    def own(name: str) -> bool:
        return name == module or (is_package and name.startswith(f"{module}."))

    seen: set[str] = set()
    project: set[str] = {module}
    external: set[str] = set()
    optional: set[str] = set()
    pending = [module, f"{module}.__main__"] if is_package else [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(source, name)
        if path is None:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        stack: list[tuple[ast.AST, list[ast.AST]]] = [(tree, [])]
        while stack:
            node, parents = stack.pop()
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package, up level - 1
                    parts = name.split(".")[: None if path.name == "__init__.py" else -1]
                    anchor = parts[: len(parts) - (node.level - 1)]
                    stem = ".".join([*anchor, node.module] if node.module else anchor)
                else:
                    stem = node.module or ""
                found = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
            if found and _guarded(parents, node):
                optional |= {item.split(".")[0] for item in found
                             if item.split(".")[0] not in (package, "", *STDLIB_MODULES)}
            elif found:
                for item in found:
                    top = item.split(".")[0]
                    if top == package:
                        if _module_file(source, item) is None:
                            continue  # `from steps.x import name`: a name, not a module
                        if own(item):
                            pending.append(item)
                        else:
                            project.add(item)
                    elif top and top not in STDLIB_MODULES and top != "__future__":
                        external.add(top)
            stack.extend((child, [*parents, node]) for child in ast.iter_child_nodes(node))
    project |= {name for name in seen if _module_file(source, name) is not None}
    required = external | {name for name in project if not name.endswith("__main__")}
    return required, optional - required


def diagnose(text: str) -> str:
    """The cause of a failed command, from its output (stdout and stderr), in a few words."""
    if match := re.search(r"ModuleNotFoundError: No module named '([^']+)'", text):
        return f"the image lacks the Python module '{match.group(1)}'"
    if match := re.search(r"(?:bash: )?(?:line \d+: )?([\w.+-]+): command not found", text):
        return f"the image lacks the command '{match.group(1)}'"
    if match := re.search(r"bash: (?:line \d+: )?(\S+): No such file or directory", text):
        return (f"the shell could not open {match.group(1)}: REANA creates no output or log "
                "directory before a job, so the command must make it (e.g. mkdir -p)")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def undeclared_paths(text: str, source: Path, workspace: Path) -> list[str]:
    """Paths named in ``text`` that the checkout has but the workspace (reana.yaml) lacks."""
    found = []
    for token in dict.fromkeys(re.findall(r"[\w.+-]+(?:/[\w.+-]+)+|[\w+-]+\.[A-Za-z]\w*", text)):
        token = token.strip("./")
        if not token or token.startswith(("results/", "logs/", ".snakemake")):
            continue
        try:
            if (source / token).exists() and not (workspace / token).exists():
                found.append(token)
        except OSError:
            continue
    return found


# --- The executor ----------------------------------------------------------------------------


class RunSettings:
    """What the executor needs to know about this run."""

    def __init__(self, source: Path, workspace: Path, uid: int, gid: int,
                 owner: tuple[int, int] | None, create_dirs: bool, default_memory: str,
                 max_memory: str | None, secrets: list[str], job_logs: Path | None) -> None:
        self.source = source
        self.workspace = workspace
        self.uid = uid  # REANA's runtime uid, for rules without their own kubernetes_uid
        self.gid = gid
        self.owner = owner  # who must own directories made here (as root), or None
        self.create_dirs = create_dirs
        self.default_memory = default_memory
        self.max_memory = max_memory
        self.secrets = secrets  # `docker run` arguments: --env NAME, never a value
        # REANA_WORKFLOW_UUID: REANA gives every workflow (run) its own uuid4, which the job
        # controller hands to each job (JobManager._extend_env_vars: str(workflow_uuid)).
        self.workflow_uuid = str(uuid.uuid4())
        self.run_id = self.workflow_uuid.split("-")[0]  # short, for container names
        self.failures: list[str] = []
        self.job_output_dir = Path(tempfile.mkdtemp(prefix="pubflow-reana-jobs-"))
        self.job_logs = job_logs


def job_command(workspace: str, shellcmd: str, shared_group: bool) -> str:
    """The command REANA's engine submits (reana-workflow-engine-snakemake ``executor.py``,
    ``REANAClusterExecutor.run``: ``f"cd {workflow_workspace} && {job.shellcmd}"``). Not as
    root, the jobs also take REANA's umask, so that what they make stays writable by the group
    that lets you clean the workspace (``hand_over``)."""
    command = f"cd {shlex.quote(workspace)} && {shellcmd}"
    return f"umask {workspace_umask():04o} && {command}" if shared_group else command


def make_executor_class(settings: RunSettings) -> type:
    """A Snakemake 7 cluster executor that runs each job in its rule's image with Docker."""
    from snakemake.common import async_lock
    from snakemake.exceptions import WorkflowError
    from snakemake.executors import ClusterExecutor, GenericClusterExecutor
    from snakemake.logging import logger

    DockerJob = namedtuple("DockerJob", "job callback error_callback process name output start")

    class DockerJobExecutor(GenericClusterExecutor):
        """REANA's trick (reana-workflow-engine-snakemake ``executor.py``,
        ``REANAClusterExecutor``): replace the generic cluster executor; submit to Docker
        instead of REANA's job controller."""

        def run(self, job, callback=None, submit_callback=None, error_callback=None):
            super()._run(job)  # REANA's engine does only this: no job.prepare(), no directories
            try:
                name, process, output = self._start(job)
            except (ReanaLocalError, WorkflowError) as err:
                self._fail(job, str(err))
                error_callback(job)
                return
            self.workflow.persistence.started(job, external_jobid=name)
            submit_callback(job)
            with self.lock:
                self.active_jobs.append(DockerJob(job, callback, error_callback, process, name,
                                                  output, time.monotonic()))

        def _start(self, job) -> tuple[str, subprocess.Popen, Path]:
            if job.is_group():
                raise ReanaLocalError("group jobs are not supported by REANA")
            if not job.is_shell:
                raise ReanaLocalError("REANA runs only shell: rules (no run:, script:, notebook:)")
            image = image_of(job.container_img_url)
            if image is None:
                raise ReanaLocalError("the rule names no container: image")
            # The job controller checks the limit when the job is submitted, and refuses the
            # job (KubernetesJobManager.set_memory_limit); a rule without one gets the
            # cluster's default (KubernetesJobManager.add_memory_limit).
            requested = job.resources.get("kubernetes_memory_limit")
            problem = memory_limit_problem(requested, settings.max_memory)
            if problem is not None:
                raise ReanaLocalError(f"REANA refuses kubernetes_memory_limit={requested!r}: "
                                      f"{problem}")
            limit = requested or settings.default_memory
            if not image_exists(image):
                raise ReanaLocalError(f"the image {image} is not on this machine: build it with "
                                      "`bash environments/build-images.sh` (nothing is pulled)")
            if settings.create_dirs:
                for f in [*job.output, *job.log]:
                    f.prepare()
                    self._give(Path(os.path.abspath(str(f))).parent)
            workspace = str(settings.workspace)
            uid = job_uid(job.resources.get("kubernetes_uid"), settings.uid)
            name = f"pubflow-reana-{settings.run_id}-{job.name}-{job.jobid}"
            shared_group = settings.owner is None
            args = [
                DOCKER, "run", "--name", name, "--pull=never", "--network=none",
                # The pod label REANA's job controller sets (KubernetesJobManager.execute).
                "--label", f"reana-run-job-workflow-uuid={settings.workflow_uuid}",
                # The job container's securityContext: allowPrivilegeEscalation False.
                "--security-opt", "no-new-privileges",
                f"--memory={memory_limit_bytes(limit)}",
                f"--memory-swap={memory_limit_bytes(limit)}",  # Kubernetes nodes run no swap
                "--user", f"{uid}:{settings.gid}",
                *(["--group-add", str(os.getgid())] if shared_group else []),
                # Secrets first, then REANA's own variables, in KubernetesJobManager.execute's
                # order.
                *settings.secrets,
                "--env", f"REANA_WORKSPACE={workspace}",
                "--env", f"REANA_WORKFLOW_UUID={settings.workflow_uuid}",
                "--volume", f"{workspace}:{workspace}",
                image, "bash", "-c", job_command(workspace, job.shellcmd, shared_group)]
            logger.info(f"reana-local: job {job.jobid} ({job.name}) in {image}, memory limit "
                        f"{limit}" + ("" if requested else " (REANA's default)"))
            output = settings.job_output_dir / f"{job.name}-{job.jobid}.docker"
            # Docker's own messages (a container that cannot start); the job's output is read
            # from the container afterwards, as REANA reads the pod's.
            with open(output, "w") as out:
                process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out,
                                           stdin=subprocess.DEVNULL)
            return name, process, output

        def _give(self, directory: Path) -> None:
            """Hand a directory made here (as root) to the uid the jobs run as."""
            if settings.owner is not None:
                workspace = settings.workspace
                while directory != workspace and workspace in directory.parents:
                    os.chown(directory, *settings.owner)
                    directory = directory.parent

        def _fail(self, job, cause: str) -> None:
            message = f"rule {job.name} (job {job.jobid}): {cause}"
            settings.failures.append(message)
            logger.error(f"reana-local: {message}")

        def _job_logs(self, active: DockerJob) -> str | None:
            """The job's stdout and stderr, as the container wrote them (REANA reads the pod's:
            reana-job-controller ``kubernetes_job_manager.py``, ``_get_containers_logs``, which
            ``reana-client logs`` shows); None if no container ever ran."""
            result = subprocess.run([DOCKER, "logs", active.name], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace",
                                    check=False)
            if result.returncode != 0:
                return None
            if settings.job_logs is not None:
                settings.job_logs.mkdir(parents=True, exist_ok=True)
                path = settings.job_logs / f"{active.job.name}-{active.job.jobid}.log"
                path.write_text(result.stdout)
            return result.stdout

        def _finished(self, active: DockerJob) -> bool:
            """Reap a finished container; True if the job succeeded."""
            state = subprocess.run(
                [DOCKER, "inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}",
                 active.name], capture_output=True, text=True, check=False).stdout.split()
            logs = self._job_logs(active)
            subprocess.run([DOCKER, "rm", "-f", active.name], capture_output=True, check=False)
            oom = bool(state) and state[0] == "true"
            code = int(state[1]) if len(state) > 1 else active.process.returncode
            job = active.job
            logger.info(f"reana-local: job {job.jobid} ({job.name}) exited {code} after "
                        f"{time.monotonic() - active.start:.1f} s")
            if code == 0 and not oom:
                return True
            limit = job.resources.get("kubernetes_memory_limit") or settings.default_memory
            text = logs if logs is not None else active.output.read_text(errors="replace")
            image = image_of(job.container_img_url)
            if oom or code == 137:
                cause = (f"exceeded its memory limit (kubernetes_memory_limit={limit}): the "
                         f"container was killed by the out-of-memory killer (exit {code}) in "
                         f"{image}")
            else:
                cause = f"exit code {code} in {image}: {diagnose(text)}"
                missing = undeclared_paths(text, settings.source, settings.workspace)
                if missing:
                    cause += (f"; {', '.join(missing)} exists in the checkout but reana.yaml "
                              "does not declare it (inputs.files / inputs.directories)")
            detail = "\n".join(f"    | {line}" for line in text.strip().splitlines()[-8:])
            self.print_job_error(job, cluster_jobid=active.name)
            if detail:
                logger.error(f"reana-local: the end of job {job.jobid}'s output (its stdout "
                             f"and stderr, as `reana-client logs` shows them):\n{detail}")
            self._fail(job, cause)
            return False

        async def _wait_for_jobs(self):
            while True:
                async with async_lock(self.lock):
                    if not self.wait:
                        return
                    active_jobs = self.active_jobs
                    self.active_jobs = []
                still_running = []
                for active in active_jobs:
                    if active.process.poll() is None:
                        still_running.append(active)
                    elif self._finished(active):
                        active.callback(active.job)
                    else:
                        active.error_callback(active.job)
                async with async_lock(self.lock):
                    self.active_jobs.extend(still_running)
                await asyncio.sleep(0.2)

        def handle_job_success(self, job):
            # As REANA's engine: touch() outputs are handled here, in the engine.
            super(ClusterExecutor, self).handle_job_success(
                job, upload_remote=False, handle_log=False, handle_touch=True)

        def cancel(self):
            with self.lock:
                names = [active.name for active in self.active_jobs]
            for name in names:
                subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, check=False)
            self.shutdown()

    return DockerJobExecutor


def remove_containers(workflow_uuid: str) -> None:
    """Remove every container this run left (after a crash or an interrupt)."""
    label = f"label=reana-run-job-workflow-uuid={workflow_uuid}"
    names = subprocess.run([DOCKER, "ps", "-aq", "--filter", label], capture_output=True,
                           text=True, check=False).stdout
    if names.split():
        subprocess.run([DOCKER, "rm", "-f", *names.split()], capture_output=True, check=False)


def require_docker() -> None:
    if not os.access(DOCKER, os.X_OK):
        raise ReanaLocalError(f"{DOCKER} is missing: run `bash environments/build-images.sh`")
    result = subprocess.run([DOCKER, "info"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ReanaLocalError("the Docker daemon does not answer: start it with `bash "
                              "environments/build-images.sh` (it starts dockerd)")


def memory_settings(args: argparse.Namespace) -> tuple[str, str | None]:
    """The default job memory limit and the maximum, each checked as REANA checks a limit."""
    default = (getattr(args, "default_memory", None) or os.environ.get(MEMORY_LIMIT_ENV)
               or REANA_DEFAULT_MEMORY_LIMIT)
    maximum = args.max_memory or os.environ.get(MAX_MEMORY_LIMIT_ENV) or None
    for option, value in (("--default-memory", default), ("--max-memory", maximum)):
        problem = memory_limit_problem(value, None)
        if problem is not None:
            raise ReanaLocalError(f"{option} {value!r}: {problem}")
    return default, maximum


def run(args: argparse.Namespace) -> int:
    """Create the workspace, run the workflow in it, report each failure in one line."""
    import snakemake
    from snakemake import scheduler
    from snakemake.resources import DefaultResources

    secrets = secret_arguments(args.secret, os.environ)
    default_memory, max_memory = memory_settings(args)
    require_docker()
    source = Path(args.source).resolve()
    spec_path = Path(args.spec).resolve() if args.spec else source / "reana.yaml"
    spec = load_spec(spec_path)
    try:  # reana-client create uploads the specification file, by its path from here
        spec_file: str | None = spec_path.relative_to(source).as_posix()
    except ValueError:
        spec_file = None
    workspace = Path(args.workspace) if args.workspace else Path(
        tempfile.mkdtemp(prefix="pubflow-reana-"))
    workspace = make_workspace(source, spec, workspace, spec_file)
    config = workflow_config(source, spec)
    config.update(parse_config_overrides(args.config))

    uid, gid = runtime_user()
    owner = hand_over(workspace, uid, gid)
    settings = RunSettings(source, workspace, uid, gid, owner, args.create_dirs, default_memory,
                           max_memory, secrets, Path(args.job_logs) if args.job_logs else None)
    scheduler.GenericClusterExecutor = make_executor_class(settings)
    # What REANA's engine does before Snakemake starts (reana-workflow-engine-snakemake
    # cli.py, run_snakemake_workflow_engine_adapter): the Snakefile may read these.
    os.environ["workflow_uuid"] = settings.workflow_uuid  # noqa: SIM112 (REANA's names)
    os.environ["workflow_workspace"] = str(workspace)  # noqa: SIM112
    os.umask(workspace_umask())

    captured: list[str] = []

    def capture(message: dict[str, Any]) -> None:
        if message.get("level") == "error":
            captured.append(str(message.get("msg", "")))

    print(f"reana-local: workspace {workspace} (what reana-client would upload), Snakemake "
          f"{snakemake.__version__}, jobs as uid {uid}, gid {gid}"
          + ("" if owner else f" (with your group {os.getgid()})")
          + f", REANA_WORKFLOW_UUID={settings.workflow_uuid}", file=sys.stderr)
    start = time.monotonic()
    try:
        ok = snakemake.snakemake(
            str(workspace / spec["workflow"]["file"]),
            workdir=str(workspace),
            config=config,
            targets=args.targets or None,
            cluster="reana-local",  # unused: the executor above replaces the submission
            nodes=args.jobs,
            printshellcmds=True,
            notemp=True,
            latency_wait=5,
            # As REANA's engine (executor.py, run_jobs): no mem_mb/disk_mb made up for rules.
            default_resources=DefaultResources(mode="bare"),
            log_handler=[capture],
        )
    finally:
        remove_containers(settings.workflow_uuid)
        shutil.rmtree(settings.job_output_dir, ignore_errors=True)
        if owner is not None:
            # REANA's engine runs as the runtime user too, so what it writes (.snakemake/, the
            # .snakemake_timestamp of directory() outputs) is the runtime user's; this engine
            # ran as root: hand those over as well.
            hand_over(workspace, uid, gid)
    elapsed = time.monotonic() - start
    if ok:
        print(f"reana-local: finished in {elapsed:.0f} s; results in {workspace}",
              file=sys.stderr)
        return 0
    failures = list(settings.failures)
    if not failures:  # Snakemake stopped before any job: the DAG (a missing input, ...)
        text = "\n".join(captured)
        rule = re.search(r"\bin rule (\w+)|for rule (\w+)", text)
        cause = diagnose(text)
        missing = undeclared_paths(text, source, workspace)
        if missing:
            cause = (f"{', '.join(missing)} exists in the checkout but reana.yaml does not "
                     "declare it (inputs.files / inputs.directories), so REANA's workspace "
                     "will not hold it")
        name = next((g for g in rule.groups() if g), None) if rule else None
        failures = [f"rule {name}: {cause}" if name else f"the workflow: {cause}"]
    print(f"reana-local: FAILED after {elapsed:.0f} s (workspace {workspace}):", file=sys.stderr)
    for failure in failures:
        print(f"reana-local: FAILED {failure}", file=sys.stderr)
    return 1


# --- check: every rule's image, before any run -----------------------------------------------


def load_rules(source: Path, spec: dict[str, Any], overrides: dict[str, Any]) -> list[Any]:
    """Every rule of the workflow, parsed by Snakemake 7 as REANA's engine would."""
    from snakemake.workflow import Workflow

    config = workflow_config(source, spec)
    config.update(overrides)
    snakefile = str(source / spec["workflow"]["file"])
    cwd = os.getcwd()
    os.chdir(source)
    try:
        workflow = Workflow(snakefile=snakefile, overwrite_config=config)
        workflow.include(snakefile, overwrite_default_target=True)
        workflow.check()
    finally:
        os.chdir(cwd)
    return list(workflow.rules)


def check(args: argparse.Namespace) -> int:
    """Check every rule against its image; one line per problem."""
    _, max_memory = memory_settings(args)
    require_docker()
    source = Path(args.source).resolve()
    spec = load_spec(Path(args.spec).resolve() if args.spec else source / "reana.yaml")
    rules = load_rules(source, spec, parse_config_overrides(args.config))
    uid, gid = runtime_user()
    problems: list[str] = []
    by_image: dict[str, dict[str, list[str]]] = {}
    notes: list[str] = []
    for rule in rules:
        if rule.norun:
            continue
        if not rule.shellcmd:
            problems.append(f"rule {rule.name}: REANA runs only shell: rules")
            continue
        image = image_of(rule._container_img if isinstance(rule._container_img, str) else None)
        if image is None:
            problems.append(f"rule {rule.name}: names no container: image")
            continue
        limit = rule.resources.get("kubernetes_memory_limit")
        if limit is None:
            problems.append(f"rule {rule.name}: sets no resources: kubernetes_memory_limit")
        elif callable(limit):
            notes.append(f"rule {rule.name}: kubernetes_memory_limit is computed per job: "
                         "checked when each job is submitted")
        else:
            refusal = memory_refusal(rule.name, limit, max_memory)
            if refusal is not None:
                problems.append(refusal)
        by_image.setdefault(image, {})[rule.name] = python_modules(rule.shellcmd)
    for image, rule_modules in sorted(by_image.items()):
        if not image_exists(image):
            problems.extend(f"rule {name}: the image {image} is not on this machine (build it "
                            "with `bash environments/build-images.sh`)" for name in rule_modules)
            continue
        pairs = [x for name, modules in rule_modules.items() for m in modules for x in (name, m)]
        result = subprocess.run(
            [DOCKER, "run", "--rm", "--pull=never", "--network=none", "--user", f"{uid}:{gid}",
             "--security-opt", "no-new-privileges", "--env", "PYTHONDONTWRITEBYTECODE=1",
             "--volume", f"{source}:/checkout:ro", "--workdir", "/checkout",
             "--volume", f"{Path(__file__).resolve().parent}:/pubflow-runner:ro", image, "bash",
             "-c", 'exec python -c "$0" "$@"', IMAGE_PROBE, "/pubflow-runner", *pairs],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            cause = diagnose(result.stdout + result.stderr)
            problems.extend(f"rule {name}: {image}: {cause}" for name in rule_modules)
            continue
        for line in result.stdout.splitlines():
            name, module, error = line.split("\t", 2)
            if name.endswith("?"):
                notes.append(f"rule {name[:-1]}: {image} cannot import {module}, which the "
                             f"code imports optionally: {diagnose(error)}")
            elif error.startswith("scan: "):
                problems.append(f"rule {name}: {image} cannot read the code of {module}: "
                                f"{error[len('scan: '):]}")
            else:
                problems.append(f"rule {name}: {image} cannot import {module}: "
                                f"{diagnose(error)}")
    for note in notes:
        print(f"reana-local check: note: {note}", file=sys.stderr)
    for problem in problems:
        print(f"reana-local check: {problem}", file=sys.stderr)
    checked = sum(len(v) for v in by_image.values())
    print(f"reana-local check: {checked} rules in {len(by_image)} images: "
          + ("OK" if not problems else f"{len(problems)} problems"), file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reana_local.py", description="Run pubflow's workflow as REANA would, locally.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("run", "run the workflow, each job in its rule's image"),
                           ("check", "check every rule's image, run nothing")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--source", default=str(REPO),
                       help="checkout holding reana.yaml (default: this repository)")
        p.add_argument("--spec", help="the REANA specification (default: SOURCE/reana.yaml)")
        p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (the value is YAML; repeat for more), "
                            "e.g. --config 'Images={Prefix: ghcr.io/me/pubflow}'")
        p.add_argument("--max-memory", metavar="LIMIT",
                       help="refuse a kubernetes_memory_limit above LIMIT, as a cluster whose "
                            f"admin set {MAX_MEMORY_LIMIT_ENV} does (default: that variable; "
                            "unset, no maximum: REANA's own default)")
    run_parser = sub.choices["run"]
    run_parser.add_argument("targets", nargs="*", help="files to make (default: the workflow's)")
    run_parser.add_argument("--workspace", help="new or empty directory (default: a new one "
                                                "under $TMPDIR)")
    run_parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                            help="jobs at once (default: the number of cores)")
    run_parser.add_argument("--secret", action="append", default=[], metavar="NAME",
                            help="give every job the environment variable NAME from this "
                                 "environment, as REANA gives a secret added with "
                                 "`reana-client secrets-add --env NAME=...` (repeatable; the "
                                 "value is passed by name, never shown)")
    run_parser.add_argument("--default-memory", metavar="LIMIT",
                            help="memory limit of a job whose rule sets none (default: "
                                 f"{MEMORY_LIMIT_ENV}, else REANA's {REANA_DEFAULT_MEMORY_LIMIT})")
    run_parser.add_argument("--job-logs", metavar="DIR",
                            help="write each job's stdout and stderr (what `reana-client logs` "
                                 "shows) to DIR/<rule>-<job>.log")
    run_parser.add_argument("--create-dirs", action="store_true",
                            help="make each job's output and log directories before it runs, "
                                 "as local Snakemake does (REANA 0.9 does not)")
    args = parser.parse_args(argv)
    try:
        return run(args) if args.command == "run" else check(args)
    except ReanaLocalError as err:
        print(f"reana-local: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
