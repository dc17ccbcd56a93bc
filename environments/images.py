"""The names of pubflow's step images, from the one place that sets them.

Standard library only: the build script runs this with any ``python3``, and the REANA-like
runner (``environments/reana_local.py``) and the tests import it.

The defaults live in ``workflows/rules/common.smk`` (the ``image()`` helper: ``Images.Prefix``,
``Images.Tag``, the tag defaulting to ``steps.__version__``), so that a fork changes one value.
They are read here as text, never by importing the analysis package.

    python3 environments/images.py                      # <environment> <image>, one a line
    python3 environments/images.py --prefix ghcr.io/me/pubflow --tag 0.2.0
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENTS = REPO / "environments"
COMMON = REPO / "workflows" / "rules" / "common.smk"
VERSION_FILE = REPO / "steps" / "__init__.py"


def default_prefix() -> str:
    """The registry/prefix that ``image()`` uses when the config sets no ``Images.Prefix``."""
    match = re.search(r"""_images\.get\(\s*["']Prefix["']\s*,\s*["']([^"']+)["']""",
                      COMMON.read_text())
    if not match:
        raise RuntimeError(f"{COMMON}: no default for Images.Prefix found in the image() block")
    return match.group(1)


def default_tag() -> str:
    """The package version, which ``image()`` uses when the config sets no ``Images.Tag``."""
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", VERSION_FILE.read_text(),
                      re.MULTILINE)
    if not match:
        raise RuntimeError(f"{VERSION_FILE}: no __version__ found")
    return match.group(1)


def environments() -> list[str]:
    """Every step environment: a folder under ``environments/`` holding a ``Dockerfile``."""
    return sorted(p.parent.name for p in ENVIRONMENTS.glob("*/Dockerfile"))


def image(environment: str, prefix: str | None = None, tag: str | None = None) -> str:
    """The image name (no ``docker://``) that ``image(environment)`` gives the rules."""
    return f"{prefix or default_prefix()}-{environment}:{tag or default_tag()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", help="registry/prefix (default: common.smk's)")
    parser.add_argument("--tag", help="image tag (default: the package version)")
    args = parser.parse_args()
    for name in environments():
        print(name, image(name, args.prefix, args.tag))


if __name__ == "__main__":
    main()
