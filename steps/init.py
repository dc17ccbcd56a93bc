"""init: start a new analysis repository from this checkout's workflow.

``python -m steps.init DIR [--name NAME] [--force]`` copies the workflow (Snakefile, rules,
the ``steps`` package, the environments, ``reana.yaml``, CI) from the checkout the ``steps``
package is installed from, and writes an example analysis with comments: ``inputs/pubflow.yaml``
naming ``inputs/analysis.yaml`` (a plain cabinetry config whose ntuple paths the user replaces)
and a README. The bundled analysis's data, reference numbers and every cache stay behind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path

import steps
from steps import cli
from steps.errors import PubflowError, one_line

#: Copied as they are, relative to the checkout's root.
COPIED = (
    "Snakefile",
    "workflows",
    "steps",
    "environments",
    "pyproject.toml",
    ".github/workflows/tests.yml",
    ".github/workflows/images.yml",
)
#: Needed to write the adapted copies (reana.yaml, the REANA test scenarios).
ADAPTED = ("reana.yaml", "tests/reana/workflow.feature", ".ci/run")

#: Never copied from inside a copied folder: caches, environments, run outputs.
IGNORED = ("__pycache__", "*.pyc", ".snakemake", "results", "logs", ".venv*", "*.egg-info",
           ".pytest_cache", ".ruff_cache", ".mypy_cache")

#: A name REANA takes as a workflow name and cabinetry as a measurement name.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

#: What a signal scan adds to reana.yaml's outputs: the example has none, and REANA's
#: "all the outputs should be included" scenario would fail on files that are never made.
SCAN_OUTPUTS = ("results/model/patchset.json", "results/fit/limits.json")

PUBFLOW_YAML = """\
# pubflow's config: the workflow's entry point (`snakemake --configfile` and REANA's
# `inputs.parameters.input` take a file of this shape). It names the analysis's cabinetry
# config and adds only what cabinetry has no keys for. Schema: steps/schemas/analysis.schema.json
# (checked by every step; a wrong key is one line naming the file and the key).

# The cabinetry config (General, Regions, Samples, NormFactors, Systematics)
Analysis: "inputs/analysis.yaml"

# The dataset manifest: every input file the analysis reads, with its size, checksum, trees
# and provenance. Written by `python -m steps.datasets add inputs/data/*.root`; it lists at
# least one file, so it does not exist until you add the first ntuple. An entry looks like
#   - path: "inputs/data/data.root"
#     size: 178971
#     sha256: "8290ddc1..."
#     trees: {{events: 2304}}
#     provenance: {{source: "...", license: "CC0-1.0"}}
# where `add` writes "FILL IN: ..." for what only you know (steps.validate refuses those).
Datasets: "inputs/datasets.yaml"

# Everything below is optional until it is needed; uncomment what your analysis has.

# Integrated luminosity, as a pyhf lumi modifier on every simulated sample. Leave it out if
# your cabinetry config has its own luminosity systematic (never both).
# Luminosity:
#   Value: 139.0
#   Unit: "fb^-1"
#   RelativeUncertainty: 0.017

# Metadata of the HEPData record, Zenodo and CAP: only the publish rules ask for it.
# Publication:
#   Title: "..."
#   Abstract: >-
#     ...
#   Authors:
#     - Name: "..."
#       Affiliation: "..."
#   License:
#     Name: "CC0-1.0"
#     URL: "https://creativecommons.org/publicdomain/zero/1.0/"

# A signal hypothesis scan, one CLs limit per point (see the pubflow README, "Signal scans"):
# Scan:
#   Name: "..."
#   Grid: {{m_x: [500, 750, 1000]}}      # or Points: [{{m_x: 500, m_y: 100}}, ...]
#   Units: {{m_x: "GeV"}}
#   Replaces: "Signal"                 # the sample each hypothesis replaces (POI: General.POI)
#   Sample:                            # a cabinetry sample; {{m_x}} is the point's value
#     Name: "Signal_{{m_x}}"
#     Tree: "signal_{{m_x}}"
#     SamplePath: "signal.root"
#     Weight: "weight"

# Container images of the rules on REANA, once .github/workflows/images.yml has published
# them under your account (by default pubflow's own).
# Images:
#   Prefix: "ghcr.io/<owner>/pubflow"
"""

ANALYSIS_YAML = """\
# The analysis, as cabinetry configures one (https://cabinetry.readthedocs.io/en/latest/config.html):
# cabinetry reads this file as it is (`cabinetry.configuration.load`). What pubflow adds is in
# inputs/pubflow.yaml, which names this file.
#
# An example to replace: one region, data, one background and a signal whose normalisation
# is fitted. Put your ntuples under inputs/data/ (or change InputPath and the SamplePaths),
# and set the trees, weights, variable and binning to yours.

General:
  Measurement: "{name}"
  POI: "Signal_norm"
  # every sample's file: {{SamplePath}} is replaced by the sample's SamplePath
  InputPath: "inputs/data/{{SamplePath}}"
  HistogramFolder: "results/histograms/"

Regions:
  - Name: "Signal_region"
    Variable: "jet_pt"  # a branch of the trees, or an expression of branches
    # Filter: "n_jets >= 2"  # the selection, as a boolean expression of branches
    Binning: [200, 300, 400, 500, 600]

Samples:
  - Name: "Data"
    Tree: "pseudodata"
    SamplePath: "data.root"  # PLACEHOLDER: your data ntuple
    Data: true
  - Name: "Background"
    Tree: "background"
    SamplePath: "background.root"  # PLACEHOLDER: your background ntuple
    Weight: "weight"  # per-event weight (a branch or an expression)
  - Name: "Signal"
    Tree: "signal"
    SamplePath: "signal.root"  # PLACEHOLDER: your signal ntuple
    Weight: "weight"

NormFactors:
  # the parameter of interest: the signal's normalisation relative to its prediction
  - Name: "Signal_norm"
    Samples: "Signal"
    Nominal: 1
    Bounds: [0, 10]

Systematics:
  # a 10% normalisation uncertainty on the background; shape uncertainties come from
  # NormPlusShape systematics with Up/Down trees, as in cabinetry
  - Name: "Background_norm"
    Type: "Normalization"
    Samples: "Background"
    Up:
      Normalization: 0.1
    Down:
      Normalization: -0.1
"""

FEATURE = """\
# REANA workflow tests (Gherkin), run after a finished run, at the repository root:
#   reana-client test -w {name}        (reana-client 0.95 pre-releases only)
# Only steps that reana-commons' Gherkin code implements can be used. They take quoted text
# literally, escapes included: write JSON fragments in a doc string (\"\"\") instead.
# Written for the example analysis: change the region and POI names when you change them.
Feature: {name} run

    As a physicist re-running this analysis on REANA,
    I want the key outputs to exist and to have been validated,
    so that I can trust the published record.

    Scenario: The run has finished
        When the workflow is finished
        Then the workflow status should be "finished"
        # every file listed under outputs.files of reana.yaml
        And all the outputs should be included in the workspace

    Scenario: The histograms and the likelihood were produced
        When the workflow is finished
        Then the workspace should include "results/histograms.json"
        And the workspace should include "results/model/workspace.json"
        And the file "results/model/workspace.json" should contain "staterror_Signal_region"

    Scenario: The fit was produced
        When the workflow is finished
        Then the workspace should include "results/fit/results.json"
        And the file "results/fit/results.json" should contain "Signal_norm"

    Scenario: The HEPData submission passed validation
        When the workflow is finished
        Then the workspace should include "results/hepdata/submission.tar.gz"
        And the workspace should include "results/validation/report.json"
        # The report's own verdict: its last key, at the top level
        And the file "results/validation/report.json" should contain
            \"\"\"
              "valid": true
            }}
            \"\"\"
"""

CI_RUN = """\
#!/usr/bin/env bash
# CI: set up the environments from scratch and check the workflow: the config (one line
# naming the file and key if it is wrong), the DAG, and the REANA specification.
set -euo pipefail
cd "$(dirname "$0")/.."
bash environments/setup.sh
PATH="$PWD/.venv/bin:$PATH" .venv/bin/snakemake -n --quiet
.venv-reana/bin/reana-client validate
"""

GITIGNORE = """\
.venv/
.venv-*/
results/
logs/
.snakemake/
__pycache__/
*.egg-info/
.pytest_cache/
.ruff_cache/
.mypy_cache/
"""

README = """\
# {name}

An analysis run by the pubflow workflow: ROOT ntuples ->
histograms (cabinetry) -> pyhf likelihood -> fit -> a validated HEPData record, locally with
Snakemake or on REANA, every rule in its container image.

## Configure

- `inputs/analysis.yaml`: the analysis as a cabinetry config (regions, samples, normfactors,
  systematics). The example's ntuple paths are placeholders: put your files under
  `inputs/data/` (or change `InputPath` and the `SamplePath`s), and set trees, weights,
  variable and binning to yours.
- `inputs/pubflow.yaml`: what cabinetry has no keys for (dataset manifest, luminosity,
  publication metadata, a signal scan, container images), all optional but `Datasets`.
- `inputs/datasets.yaml`: the dataset manifest, written by a command (it lists at least one
  file, so it appears with the first one):

      python -m steps.datasets add inputs/data/*.root

  then fill in each file's `FILL IN: ...` description and provenance by hand.

## Run

    bash environments/setup.sh          # .venv (analysis), .venv-reana (REANA client)
    source .venv/bin/activate
    snakemake -n                        # checks the config and shows the jobs
    snakemake --cores all               # results/ (histograms, workspace, fit, HEPData)

On REANA (`reana.yaml`; set `Images:` in `inputs/pubflow.yaml` to images you published with
`.github/workflows/images.yml`, or use pubflow's):

    .venv-reana/bin/reana-client validate
    .venv-reana/bin/reana-client run -w {name}
    .venv-reana/bin/reana-client download -w {name}

`tests/reana/workflow.feature` holds the REANA test scenarios of the finished run; change the
region and POI names in it when you change the example's.
"""


def source_root() -> Path:
    """The checkout the ``steps`` package is installed from; refuse one without the workflow."""
    root = Path(steps.__file__).resolve().parents[1]
    for rel in (*COPIED, *ADAPTED):
        if not (root / rel).exists():
            raise PubflowError(
                f"the workflow is not beside the installed steps package (no {rel}): run "
                "steps.init from a pubflow checkout installed with `pip install -e`",
                path=root)
    return root


def _reana_yaml(text: str, name: str) -> str:
    """reana.yaml without the outputs only a signal scan makes, and with the new name."""
    lines = [line for line in text.splitlines(keepends=True)
             if not any(out in line for out in SCAN_OUTPUTS)]
    if len(lines) != len(text.splitlines()) - len(SCAN_OUTPUTS):
        # a changed reana.yaml would otherwise keep outputs the example never makes
        raise PubflowError("expected each of " + ", ".join(SCAN_OUTPUTS) + " once under "
                           "outputs.files", path="reana.yaml")
    return "".join(lines).replace("-w pubflow", f"-w {name}")


def build(root: Path, dest: Path, name: str) -> list[str]:
    """Write the skeleton into the empty folder ``dest``; return what was written (top level
    of the copies, each written file)."""
    ignore = shutil.ignore_patterns(*IGNORED)
    for rel in COPIED:
        src, out = root / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=ignore)
        else:
            shutil.copy2(src, out)
    written = {
        "reana.yaml": _reana_yaml((root / "reana.yaml").read_text(), name),
        "tests/reana/workflow.feature": FEATURE.format(name=name),
        ".ci/run": CI_RUN,
        ".gitignore": GITIGNORE,
        "inputs/pubflow.yaml": PUBFLOW_YAML.format(),
        "inputs/analysis.yaml": ANALYSIS_YAML.format(name=name),
        "README.md": README.format(name=name),
    }
    for rel, text in written.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (dest / ".ci/run").chmod(0o755)
    return [*(f"{rel}/" if (root / rel).is_dir() else rel for rel in COPIED), *written]


def _merge(src: Path, dest: Path) -> None:
    """Move every file of ``src`` to the same place under ``dest``, replacing what is there."""
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            if target.exists() and not target.is_dir():
                target.unlink()
            target.mkdir(exist_ok=True)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(path, target)  # atomic per file


def init(dest: str | Path, name: str | None = None, force: bool = False) -> list[str]:
    """Start a new analysis repository in ``dest``; return what was written.

    The skeleton is built in a temporary folder beside ``dest`` and renamed into place, so a
    failure leaves nothing. With ``force``, a non-empty ``dest`` gets the skeleton's files
    (replacing its own of the same names) and keeps the rest (e.g. ``.git``, ntuples).
    """
    dest = Path(dest).absolute()
    name = name or dest.name
    if not NAME.fullmatch(name):
        raise PubflowError(f"not a workflow name: {name!r} (letters, digits, '_', '-'; give "
                           "--name)", key="--name")
    root = source_root()
    if dest.resolve() == root:
        raise PubflowError("is the checkout the workflow is copied from", path=dest)
    if dest.exists() and not dest.is_dir():
        raise PubflowError("exists and is not a folder", path=dest)
    non_empty = dest.is_dir() and any(dest.iterdir())
    if non_empty and not force:
        raise PubflowError("folder exists and is not empty (--force writes into it)",
                           path=dest)
    if not dest.parent.is_dir():
        raise PubflowError("parent folder does not exist", path=dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.init-", dir=dest.parent))
    try:
        written = build(root, tmp, name)
        if non_empty:
            _merge(tmp, dest)
        else:
            if dest.is_dir():
                dest.rmdir()  # empty: os.replace cannot put a folder over it elsewhere
            tmp.rename(dest)
    except OSError as err:
        raise PubflowError(f"cannot write the skeleton ({one_line(err)})", path=dest) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("init", __doc__.split("\n")[0])
    p.add_argument("dir", metavar="DIR", type=Path,
                   help="the new repository (must not exist, or be empty)")
    p.add_argument("--name", help="workflow and measurement name (default: DIR's name)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty DIR, replacing its files of the same names")
    return p


def main(args: argparse.Namespace) -> None:
    written = init(args.dir, args.name, args.force)
    print(f"Created {args.dir}:")
    for rel in written:
        print(f"  {rel}")
    print(f"""
Next:
  cd {args.dir}
  git init                                    # then commit the skeleton
  bash environments/setup.sh && source .venv/bin/activate
  # replace the example ntuples in inputs/analysis.yaml (SamplePath) by yours, then
  python -m steps.datasets add inputs/data/*.root
  snakemake -n && snakemake --cores all""")


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
