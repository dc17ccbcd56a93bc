"""pubflow: from ROOT ntuples to a validated, reproducible HEPData record.

Each module is one workflow step and also a command line (``python -m steps.<name> --help``).
This package's import must stay light: the Snakefile imports ``steps.layout`` inside REANA's
workflow engine, which has only the standard library and PyYAML.
"""

import os

__version__ = "0.1.0"

# XRootD's client retries a lost server for ever by default, so a read hangs instead of
# failing; fail fast, the workflow is resumable (must be set before XRootD is imported).
os.environ.setdefault("XRD_CONNECTIONRETRY", "1")
os.environ.setdefault("XRD_REQUESTTIMEOUT", "120")
