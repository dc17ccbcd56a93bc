# Shared set-up: the config is validated at the door, and the DAG's scatter dimensions
# (input files, simulated samples, scan masses) are derived from it. Standard library and
# PyYAML only: on REANA this runs inside the workflow engine, not in an analysis image.
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


# Every rule's shell starts with `mkdir -p $(dirname {log})`: REANA 0.9's executor, unlike
# local Snakemake, creates no output or log directory before a job (the steps make their
# output directories themselves).


def image(environment):
    """The container image a rule runs in on REANA."""
    return f"docker://{IMAGE_PREFIX}-{environment}:{IMAGE_TAG}"
