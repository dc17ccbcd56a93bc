"""templates: the histograms a config makes, resolved once for every select job.

Which histograms exist, and the file, tree, variable, filter and weight of each, follow
cabinetry's resolution rules (:func:`steps.select.templates`). Importing cabinetry costs a
process about 2.5 s of CPU, more than filling a file of 10^6 events; this step pays it once,
beside the simulation, and each select job reads the result (``select --templates``).
"""

from __future__ import annotations

import argparse
import logging

from steps import cli
from steps.select import save_templates

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("templates", __doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="the resolved config (results/config.json)")
    p.add_argument("--output", required=True,
                   help="templates to write (JSON; results/templates.json)")
    return p


def main(args: argparse.Namespace) -> None:
    count = save_templates(args.output, args.config)
    log.info("%d histograms of %s written to %s", count, args.config, args.output)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
