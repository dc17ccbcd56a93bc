"""pubflow: from ROOT ntuples to a validated, reproducible HEPData record.

Each module is one workflow step and also a command line (``python -m steps.<name> --help``).
This package's import must stay light: the Snakefile imports ``steps.layout`` inside REANA's
workflow engine, which has only the standard library and PyYAML.
"""

__version__ = "0.1.0"
