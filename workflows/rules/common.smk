# Shared set-up: the config is validated at the door, and the DAG's scatter dimensions
# (input files, simulated samples, scan masses) are derived from it. Standard library and
# PyYAML only: on REANA this runs inside the workflow engine, not in an analysis image.
import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from steps import __version__, layout  # noqa: E402

validate(config, "../../steps/schemas/analysis.schema.json")

CONFIG_FILE = "inputs/analysis.yaml"
DATASETS = config["Datasets"]
HISTOGRAMS = config["General"]["HistogramFolder"].rstrip("/")
SELECT_JOBS = layout.select_jobs(config)
# simulate jobs are named after the file they write (a sample may span several files)
SIMULATED = {Path(path).stem: path for path in layout.simulated_samples(config)}
MASSES = list(config.get("Scan", {}).get("Masses", []))

_images = config.get("Images", {})
IMAGE_PREFIX = _images.get("Prefix", "ghcr.io/pubflow/pubflow")
IMAGE_TAG = _images.get("Tag", __version__)


def local_file(path):
    """``path`` if it is a local file, nothing for a URL (Snakemake cannot track those)."""
    return [] if layout.is_remote(path) else path


def rule_name(prefix, job):
    """A rule name (an identifier) for one job of a scatter defined rule by rule."""
    return prefix + "_" + re.sub(r"\W", "_", job)


# Every step is called with `--log {log}`: it writes its messages to the rule's log file and to
# its own stderr, which is what `reana-client logs` shows (a shell `2> {log}` would hide the
# error there), and makes the log's directory itself (REANA 0.9's executor, unlike local
# Snakemake, creates no output or log directory before a job).


def image(environment):
    """The container image a rule runs in on REANA."""
    return f"docker://{IMAGE_PREFIX}-{environment}:{IMAGE_TAG}"
