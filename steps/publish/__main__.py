"""publish: send a validated result to HEPData, Zenodo and CERN Analysis Preservation.

Every target is a dry run against its sandbox unless told otherwise: it writes, under
results/publish/<target>/bundle/, exactly what it would send (the files, the metadata) and
the request plan, and sends nothing. --upload sends (credentials from the environment),
--production uses the real service, --publish (Zenodo, CAP) makes the record public.
Nothing is published unless results/validation/report.json says valid and the files still
match it. Order: hepdata, then zenodo (links the HEPData record), then cap (links both).
inveniordm makes the Zenodo record through InvenioRDM's own REST API, on any InvenioRDM
instance (--base-url), Zenodo's included.
"""

from __future__ import annotations

import argparse

from steps import cli
from steps.publish import cap, hepdata, inveniordm, zenodo

EPILOG = """examples:
  python -m steps.publish zenodo                          # dry run: bundle + plan, sends nothing
  python -m steps.publish hepdata --upload                # HEPData sandbox
  python -m steps.publish zenodo --upload                 # a draft on sandbox.zenodo.org
  python -m steps.publish zenodo --upload --publish       # ... published (sandbox DOI)
  python -m steps.publish zenodo --upload --production --publish   # the real DOI
  python -m steps.publish inveniordm --upload --base-url https://sandbox.zenodo.org
  python -m steps.publish inveniordm --upload --production --base-url URL   # any instance
credentials (environment only; on REANA: reana-client secrets-add --env NAME=VALUE):
  HEPDATA_EMAIL, HEPDATA_PASSWORD, HEPDATA_INVITATION_COOKIE (production), ZENODO_TOKEN,
  CAP_ACCESS_TOKEN, INVENIORDM_TOKEN"""

TARGETS = {
    "hepdata": (hepdata, "upload the validated submission archive to HEPData"),
    "zenodo": (zenodo, "deposit workflow, inputs manifest, outputs and provenance on Zenodo"),
    "cap": (cap, "create or update the CERN Analysis Preservation record"),
    "inveniordm": (inveniordm, "the Zenodo deposit through InvenioRDM's REST API (any instance)"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only when it says something (not for flags or unset options)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("publish", __doc__.split("\n")[0])
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    sub = p.add_subparsers(dest="target", required=True, metavar="{hepdata,zenodo,cap,inveniordm}")
    for name, (module, summary) in TARGETS.items():
        target = cli.subcommand(sub, name, help=summary,
                                description=module.__doc__.split("\n\n")[0].replace("\n", " "),
                                formatter_class=_Formatter)
        module.add_arguments(target)
    return p


def main(args: argparse.Namespace) -> None:
    TARGETS[args.target][0].main(args)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
