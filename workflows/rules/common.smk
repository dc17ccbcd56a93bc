# Shared set-up: the DAG's scatter dimensions (input files, simulated samples, scan masses),
# derived from the config. Standard library and PyYAML only, Python 3.8: on REANA this runs
# inside the workflow engine, not in an analysis image (tests/test_engine.py).
#
# The config's schema is checked by every step, in its image, at the door (one line naming
# the file and the key), and here too where the engine can check it the same way. REANA's
# engines cannot: they carry jsonschema 3, which has no draft 2020-12 (snakemake.utils.validate
# stops REANA 0.95's loader with an ImportError and, on 0.9, silently checks another draft).
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
from steps import __version__, layout  # noqa: E402

CONFIG_FILE = "inputs/analysis.yaml"

try:
    from jsonschema import Draft202012Validator  # noqa: F401
except ImportError:
    pass
else:
    from steps.config import check_analysis

    check_analysis(config, CONFIG_FILE)

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


def image(environment):
    """The container image a rule runs in on REANA."""
    return f"docker://{IMAGE_PREFIX}-{environment}:{IMAGE_TAG}"
