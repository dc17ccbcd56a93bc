"""Run pubflow's workflow as REANA would, on this machine: every rule in its own image.

Runs with the Snakemake that REANA 0.9 runs (7.32.4, in ``.venv-reana``) and needs Docker
(``bash environments/build-images.sh`` builds the images and starts the daemon)::

    .venv-reana/bin/python environments/reana_local.py run              # the whole workflow
    .venv-reana/bin/python environments/reana_local.py run results/fit/results.json
    .venv-reana/bin/python environments/reana_local.py check            # images vs rules only

``run`` does what REANA does with a Snakemake workflow:

- a fresh workspace holding only what ``reana.yaml`` declares (``inputs.files`` and
  ``inputs.directories``); the config is the YAML named by ``inputs.parameters.input``;
- Snakemake 7.32.4 builds the DAG there and hands each job to a cluster executor, the same
  trick as REANA's own engine (``scheduler.GenericClusterExecutor`` replaced by a subclass);
  rules without a command (``all``) run in the engine, as on REANA;
- each job runs ``bash -c "cd <workspace> && <the rule's shell command>"`` in the image its
  ``container:`` names, with the workspace mounted at the same path, no network, the memory
  limit of its ``resources: kubernetes_memory_limit`` (swap included) and, when started as
  root, REANA's default runtime uid 1000 (the workspace is handed to that uid first);
- like REANA 0.9's executor, nothing creates a job's output or log directories before it
  runs, and the command carries no ``set -euo pipefail``. ``--create-dirs`` makes them as
  local Snakemake does, for a workflow that is not ready for REANA yet.

A failed job ends the run with one line per failure naming the rule and the cause: a module
the image lacks, an input that ``reana.yaml`` does not declare, the memory limit exceeded.

``check`` runs no workflow: for every rule of the Snakefile (the default target's or not) it
checks that the rule is a shell rule with a ``container:`` and a memory limit, that the image
is on this machine and has ``bash``, and that it imports, with the checkout's code, the module
of each ``python -m <module>`` in the command and every third-party module that module's own
code imports, inside functions too (the steps import their heavy libraries lazily). Optional
imports (``try: ... except ImportError``) the image lacks are reported as notes. About a
second per image.

This file must not import pubflow's analysis modules: it runs in REANA's environment.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import namedtuple
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = "/usr/bin/docker"  # the daemon's own client: another `docker` on PATH may want buildx
REANA_RUNTIME_UID = 1000  # reana-commons' WORKFLOW_RUNTIME_USER_UID default
LOG_TAIL_LINES = 15


class ReanaLocalError(Exception):
    """A problem to report in one line, without a traceback."""


# --- What reana.yaml declares ----------------------------------------------------------------


def load_spec(path: Path) -> dict[str, Any]:
    """Load ``reana.yaml`` and check the parts this runner uses."""
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ReanaLocalError(f"{path}: {err.strerror}") from err
    workflow = spec.get("workflow", {}) if isinstance(spec, dict) else {}
    if workflow.get("type") != "snakemake" or not workflow.get("file"):
        raise ReanaLocalError(f"{path}: workflow.type must be 'snakemake' with a workflow.file")
    return spec


def declared(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The files and the directories that REANA uploads into the workspace."""
    inputs = spec.get("inputs") or {}
    files = list(inputs.get("files") or [])
    directories = list(inputs.get("directories") or [])
    if spec["workflow"]["file"] not in files:
        files.append(spec["workflow"]["file"])  # reana-client uploads the workflow file too
    return files, directories


def make_workspace(source: Path, spec: dict[str, Any], workspace: Path) -> Path:
    """Create ``workspace`` holding only what ``spec`` declares, copied from ``source``."""
    if workspace.exists() and any(workspace.iterdir()):
        raise ReanaLocalError(f"{workspace}: the workspace must be new or empty")
    workspace.mkdir(parents=True, exist_ok=True)
    files, directories = declared(spec)
    for name in files:
        if not (source / name).is_file():
            raise ReanaLocalError(f"reana.yaml declares the file {name}, which {source} lacks")
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, workspace / name)
    for name in directories:
        if not (source / name).is_dir():
            raise ReanaLocalError(
                f"reana.yaml declares the directory {name}, which {source} lacks")
        shutil.copytree(source / name, workspace / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return workspace.resolve()


def workflow_config(source: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The Snakemake config REANA passes: the YAML named by ``inputs.parameters.input``."""
    parameters = (spec.get("inputs") or {}).get("parameters") or {}
    if "input" not in parameters:
        return dict(parameters)
    with open(source / parameters["input"]) as f:
        return yaml.safe_load(f) or {}


def parse_config_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each VALUE read as YAML, as ``snakemake --config`` takes them."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ReanaLocalError(f"--config {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return overrides


# --- Rules, images, memory -------------------------------------------------------------------

_MEMORY_UNITS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_bytes(value: str | int) -> int:
    """A Kubernetes memory quantity (``"2Gi"``, ``"512M"``, ``1073741824``) in bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKMGT]i?|)\s*", str(value))
    if not match or match.group(2) not in _MEMORY_UNITS:
        raise ValueError(f"not a Kubernetes memory quantity: {value!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def image_of(container_img: str | None) -> str | None:
    """The image REANA runs: the rule's ``container:`` without ``docker://``."""
    if not container_img:
        return None
    return container_img.removeprefix("docker://")


def image_exists(image: str) -> bool:
    return subprocess.run([DOCKER, "image", "inspect", image], capture_output=True,
                          check=False).returncode == 0


def python_modules(command: str) -> list[str]:
    """The modules a shell command runs with ``python -m``."""
    return re.findall(r"\bpython3?(?:\.\d+)?\s+-m\s+([\w.]+)", command)


def _guarded(parents: list[ast.AST], node: ast.AST) -> bool:
    """Whether an import is optional: under ``if TYPE_CHECKING`` or in a ``try`` whose
    ``except`` catches ``ImportError``."""
    for parent in parents:
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test):
            return True
        if isinstance(parent, ast.Try) and any(
                handler.type is not None and re.search(r"ImportError|ModuleNotFoundError",
                                                       ast.unparse(handler.type))
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
                             if item.split(".")[0] not in (package, "", *sys.stdlib_module_names)}
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
                    elif top and top not in sys.stdlib_module_names and top != "__future__":
                        external.add(top)
            stack.extend((child, [*parents, node]) for child in ast.iter_child_nodes(node))
    project |= {name for name in seen if _module_file(source, name) is not None}
    required = external | {name for name in project if not name.endswith("__main__")}
    return required, optional - required


def diagnose(text: str) -> str:
    """The cause of a failed command, from its output and log, in a few words."""
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


def make_executor_class(settings: RunSettings) -> type:
    """A Snakemake 7 cluster executor that runs each job in its rule's image with Docker."""
    from snakemake.common import async_lock
    from snakemake.exceptions import WorkflowError
    from snakemake.executors import ClusterExecutor, GenericClusterExecutor
    from snakemake.logging import logger

    DockerJob = namedtuple("DockerJob", "job callback error_callback process name output start")

    class DockerJobExecutor(GenericClusterExecutor):
        """REANA's trick: replace the generic cluster executor; submit to Docker instead."""

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
            if not image_exists(image):
                raise ReanaLocalError(f"the image {image} is not on this machine: build it with "
                                      "`bash environments/build-images.sh` (nothing is pulled)")
            limit = job.resources.get("kubernetes_memory_limit")
            memory = []
            if limit is not None:
                try:
                    memory = [f"--memory={memory_bytes(limit)}",
                              f"--memory-swap={memory_bytes(limit)}"]
                except ValueError as err:
                    raise ReanaLocalError(f"kubernetes_memory_limit: {err}") from err
            if settings.create_dirs:
                for f in [*job.output, *job.log]:
                    f.prepare()
                    self._give(Path(os.path.abspath(str(f))).parent)
            workspace = str(settings.workspace)
            name = f"pubflow-reana-{settings.run_id}-{job.name}-{job.jobid}"
            command = f"cd {shlex.quote(workspace)} && {job.shellcmd}"
            output = settings.job_output_dir / f"{job.name}-{job.jobid}.out"
            args = [DOCKER, "run", "--name", name, "--pull=never", "--network=none",
                    "--label", f"pubflow.reana-local.run={settings.run_id}",
                    *memory, "--user", settings.user, "--volume", f"{workspace}:{workspace}",
                    "--workdir", workspace, image, "bash", "-c", command]
            logger.info(f"reana-local: job {job.jobid} ({job.name}) in {image}"
                        + (f", memory limit {limit}" if limit is not None else ""))
            with open(output, "w") as out:
                process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)
            return name, process, output

        def _give(self, directory: Path) -> None:
            """Hand a directory made here (as root) to the uid the jobs run as."""
            if settings.chown is not None:
                workspace = settings.workspace
                while directory != workspace and workspace in directory.parents:
                    os.chown(directory, *settings.chown)
                    directory = directory.parent

        def _fail(self, job, cause: str) -> None:
            message = f"rule {job.name} (job {job.jobid}): {cause}"
            settings.failures.append(message)
            logger.error(f"reana-local: {message}")

        def _finished(self, active: DockerJob) -> bool:
            """Reap a finished container; True if the job succeeded."""
            state = subprocess.run(
                [DOCKER, "inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}",
                 active.name], capture_output=True, text=True, check=False).stdout.split()
            subprocess.run([DOCKER, "rm", "-f", active.name], capture_output=True, check=False)
            oom = bool(state) and state[0] == "true"
            code = int(state[1]) if len(state) > 1 else active.process.returncode
            job = active.job
            logger.info(f"reana-local: job {job.jobid} ({job.name}) exited {code} after "
                        f"{time.monotonic() - active.start:.1f} s")
            if code == 0 and not oom:
                return True
            limit = job.resources.get("kubernetes_memory_limit")
            text = active.output.read_text(errors="replace")
            for log in job.log:
                if os.path.isfile(str(log)):
                    tail = Path(str(log)).read_text(errors="replace").splitlines()
                    text += "\n" + "\n".join(tail[-LOG_TAIL_LINES:])
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
                logger.error(
                    f"reana-local: the end of job {job.jobid}'s output and log:\n{detail}")
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


class RunSettings:
    """What the executor needs to know about this run."""

    def __init__(self, source: Path, workspace: Path, user: str, chown: tuple[int, int] | None,
                 create_dirs: bool) -> None:
        self.source = source
        self.workspace = workspace
        self.user = user
        self.chown = chown
        self.create_dirs = create_dirs
        self.run_id = uuid.uuid4().hex[:8]
        self.failures: list[str] = []
        self.job_output_dir = Path(tempfile.mkdtemp(prefix="pubflow-reana-jobs-"))


def remove_containers(run_id: str) -> None:
    """Remove every container this run left (after a crash or an interrupt)."""
    label = f"label=pubflow.reana-local.run={run_id}"
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


def run(args: argparse.Namespace) -> int:
    """Create the workspace, run the workflow in it, report each failure in one line."""
    import snakemake
    from snakemake import scheduler

    require_docker()
    source = Path(args.source).resolve()
    spec = load_spec(Path(args.spec).resolve() if args.spec else source / "reana.yaml")
    workspace = Path(args.workspace) if args.workspace else Path(
        tempfile.mkdtemp(prefix="pubflow-reana-"))
    workspace = make_workspace(source, spec, workspace)
    config = workflow_config(source, spec)
    config.update(parse_config_overrides(args.config))

    uid = args.uid if args.uid is not None else (REANA_RUNTIME_UID if os.getuid() == 0
                                                 else os.getuid())
    gid = uid if os.getuid() == 0 else os.getgid()
    chown = None
    if os.getuid() == 0 and uid != 0:
        chown = (uid, gid)
        for path in [workspace, *workspace.rglob("*")]:
            os.chown(path, uid, gid, follow_symlinks=False)
    settings = RunSettings(source, workspace, f"{uid}:{gid}", chown, args.create_dirs)
    scheduler.GenericClusterExecutor = make_executor_class(settings)

    captured: list[str] = []

    def capture(message: dict[str, Any]) -> None:
        if message.get("level") == "error":
            captured.append(str(message.get("msg", "")))

    print(f"reana-local: workspace {workspace} (only what reana.yaml declares), Snakemake "
          f"{snakemake.__version__}, jobs as uid {settings.user}", file=sys.stderr)
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
            log_handler=[capture],
        )
    finally:
        remove_containers(settings.run_id)
        shutil.rmtree(settings.job_output_dir, ignore_errors=True)
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
    require_docker()
    source = Path(args.source).resolve()
    spec = load_spec(Path(args.spec).resolve() if args.spec else source / "reana.yaml")
    rules = load_rules(source, spec, parse_config_overrides(args.config))
    problems: list[str] = []
    by_image: dict[str, dict[str, list[str]]] = {}
    optional_by_image: dict[str, dict[str, list[str]]] = {}
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
        else:
            try:
                memory_bytes(limit)
            except ValueError as err:
                problems.append(f"rule {rule.name}: kubernetes_memory_limit: {err}")
        scans = [scan_imports(source, module) for module in python_modules(rule.shellcmd)]
        by_image.setdefault(image, {})[rule.name] = sorted(
            {m for required, _ in scans for m in required})
        optional_by_image.setdefault(image, {})[rule.name] = sorted(
            {m for _, optional in scans for m in optional})
    for image, rule_modules in sorted(by_image.items()):
        if not image_exists(image):
            problems.extend(f"rule {name}: the image {image} is not on this machine (build it "
                            "with `bash environments/build-images.sh`)" for name in rule_modules)
            continue
        # Import each module in the image, with the checkout's code first on sys.path, as a job
        # would run it in the workspace. One container per image.
        probe = ("import importlib, sys\n"
                 "for rule, module in zip(sys.argv[1::2], sys.argv[2::2]):\n"
                 "    try:\n"
                 "        importlib.import_module(module)\n"
                 "    except Exception as err:\n"
                 "        print(f'{rule}\\t{module}\\t{type(err).__name__}: {err}')\n")
        optional = optional_by_image[image]
        pairs = [x for name, modules in rule_modules.items() for m in modules for x in (name, m)]
        pairs += [x for name, modules in optional.items() for m in modules
                  for x in (f"{name}?", m)]
        result = subprocess.run(
            [DOCKER, "run", "--rm", "--pull=never", "--network=none",
             "--volume", f"{source}:/checkout:ro", "--workdir", "/checkout", image, "bash",
             "-c", 'exec python -c "$0" "$@"', probe, *pairs],
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
    run_parser = sub.choices["run"]
    run_parser.add_argument("targets", nargs="*", help="files to make (default: the workflow's)")
    run_parser.add_argument("--workspace", help="new or empty directory (default: a new one "
                                                "under $TMPDIR)")
    run_parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                            help="jobs at once (default: the number of cores)")
    run_parser.add_argument("--uid", type=int, help="uid the jobs run as (default: REANA's "
                                                    f"{REANA_RUNTIME_UID} as root, else yours)")
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
