# Shared set-up: the DAG's scatter dimensions (input files, simulated samples, scan masses),
# derived from the config. Standard library and PyYAML only, Python 3.8: on REANA this runs
# inside the workflow engine, not in an analysis image (tests/test_engine.py).
#
# The config's schema is checked by every step, in its image, at the door (one line naming
# the file and the key), and here too where the engine can check it the same way. REANA's
# engines cannot: they carry jsonschema 3, which has no draft 2020-12 (snakemake.utils.validate
# stops REANA 0.95's loader with an ImportError and, on 0.9, silently checks another draft).
import base64
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
from steps import __version__, layout  # noqa: E402
from snakemake.exceptions import WorkflowError  # noqa: E402

# Where the config came from, for error messages (REANA hands over its contents only).
CONFIG_SOURCE = (
    os.path.relpath(workflow.configfiles[-1])
    if workflow.configfiles
    else "the workflow config (reana.yaml: inputs.parameters)"
)
try:
    from jsonschema import Draft202012Validator  # noqa: F401
except ImportError:
    try:
        ANALYSIS = layout.resolve(config, CONFIG_SOURCE)
    except layout.ConfigError as err:
        raise WorkflowError(str(err)) from None
else:
    # the same resolution, with the schema check the steps make
    from steps.config import resolve_analysis
    from steps.errors import PubflowError

    try:
        ANALYSIS = resolve_analysis(dict(config), CONFIG_SOURCE)
    except PubflowError as err:
        raise WorkflowError(str(err)) from None
ANALYSIS_FILE = (
    config.get("Analysis") if isinstance(config.get("Analysis"), str) else []
)

# What every step reads: the config above, resolved by rule config (workflows/rules/config.smk)
CONFIG_FILE = "results/config.json"
# ... and the histograms it makes, resolved with cabinetry once for every select job
TEMPLATES = "results/templates.json"
DATASETS = ANALYSIS["Datasets"]
HISTOGRAMS = ANALYSIS["General"]["HistogramFolder"].rstrip("/")
SELECT_JOBS = layout.select_jobs(ANALYSIS)
# simulate jobs are named after the file they write (a sample may span several files)
SIMULATED = {Path(path).stem: path for path in layout.simulated_samples(ANALYSIS)}
PATCHES = layout.scan_patches(ANALYSIS)  # one limit job per patch, named by the patch
# What only an analysis with a signal scan has: the patchset, one limit job per hypothesis
PATCHSET = "results/model/patchset.json"
LIMITS = "results/fit/limits.json"
# a Brazil band for a scan in one variable, exclusion contours for two, no figure beyond
LIMIT_FIGURE = layout.limit_figure(ANALYSIS)

_images = ANALYSIS.get("Images", {})
IMAGE_PREFIX = _images.get("Prefix", "ghcr.io/pubflow/pubflow")
IMAGE_TAG = _images.get("Tag", __version__)


def local_file(path):
    """``path`` if it is a local file, nothing for a URL (Snakemake cannot track those)."""
    return [] if layout.is_remote(path) else path


def remote_url(path):
    """``path`` if it is a URL (passed to the job as a parameter), else nothing."""
    return path if layout.is_remote(path) else ""


def rule_name(prefix, job):
    """A rule name (an identifier) for one job of a scatter defined rule by rule."""
    identifier = re.sub(r"\W", "_", job)
    return f"{prefix}_{identifier}"


# Every step is called with `--log {log}`: it writes its messages to the rule's log file and to
# its own stderr, which is what `reana-client logs` shows (a shell `2> {log}` would hide the
# error there), and makes the log's directory itself (REANA 0.9's executor, unlike local
# Snakemake, creates no output or log directory before a job).


def encoded(settings):
    """``settings`` as a params string: JSON, base64-encoded, since Snakemake would take the
    braces of JSON (and of patterns such as ``{mass}`` in it) for wildcards."""
    text = json.dumps(settings, sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode()


def with_scan(**paths):
    """``paths`` for an analysis with a signal scan (those it has), nothing for one without."""
    return {key: path for key, path in paths.items() if path} if PATCHES else {}


def limit_figure(**names):
    """The limit figure's PNG and PDF under ``names``, for a scan that has one."""
    if not LIMIT_FIGURE:
        return {}
    png, pdf = names
    return {png: LIMIT_FIGURE, pdf: LIMIT_FIGURE[: -len(".png")] + ".pdf"}


def scan_options(options):
    """Command-line ``options`` of a step, for an analysis with a signal scan only."""
    return options if PATCHES else ""


def image(environment):
    """The container image a rule runs in on REANA."""
    return f"docker://{IMAGE_PREFIX}-{environment}:{IMAGE_TAG}"


_MEMORY_UNITS = {"Mi": 2**20, "Gi": 2**30}


def job_resources(memory, runtime):
    """A rule's resources, stated once and read by every engine that runs it.

    ``memory`` is a Kubernetes quantity ("512Mi", "2Gi"): REANA reads it as
    ``kubernetes_memory_limit``. Snakemake's executor plugins (Kubernetes, Slurm, HTCondor)
    read ``mem_mb``, in megabytes (10^6 bytes), rounded up so no engine grants less than
    REANA's limit; ``runtime`` is in minutes, as Snakemake and the Slurm plugin take it.
    """
    number, unit = memory[:-2], memory[-2:]
    mem_mb = -(-int(number) * _MEMORY_UNITS[unit] // 10**6)
    return {"kubernetes_memory_limit": memory, "mem_mb": mem_mb, "runtime": runtime}
