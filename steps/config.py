"""Load and validate the analysis config and the dataset manifest, at the door.

pubflow's config (``inputs/pubflow.yaml``) names the cabinetry config (``Analysis``) and adds
pubflow's own keys; ``python -m steps.config`` resolves the config Snakemake was given into
``results/config.json``, the one file every step of the workflow reads.

Schema errors become one line naming the file and the key path, e.g.
``inputs/analysis.yaml: Regions[0].Binnning: unknown key (did you mean 'Binning'?)``.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import itertools
import json
import math
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from steps import cabinetry_options, cli, layout, scan
from steps.errors import PubflowError, one_line
from steps.io import write_json

Config = dict[str, Any]


def schema(name: str) -> dict[str, Any]:
    """One of pubflow's JSON schemas (``analysis`` or ``datasets``)."""
    text = resources.files("steps").joinpath(f"schemas/{name}.schema.json").read_text()
    return json.loads(text)


def key_path(parts: Iterable[Any]) -> str:
    """``['Regions', 0, 'Filter']`` -> ``Regions[0].Filter``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """The key path and a short message for the most relevant schema error."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        bad = extra[0] if extra else "?"
        hint = difflib.get_close_matches(bad, allowed, n=1)
        suggestion = (f" (did you mean {hint[0]!r}?)" if hint
                      else f" (allowed: {', '.join(allowed)})")
        return key_path([*path, bad]), f"unknown key{suggestion}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return key_path([*path, missing]), "required key is missing"
    if isinstance(error.instance, float) and not math.isfinite(error.instance):
        # YAML's .nan / .inf: the schema's own message ("nan should not be valid under ...")
        # would say nothing useful
        return key_path(path), f"{error.instance} is not allowed here: give a finite number"
    return key_path(path), error.message


def validate(instance: Any, schema_name: str, source: str | Path,
             sources: dict[str, str] | None = None) -> None:
    """Validate against one of our schemas; raise ``PubflowError`` naming file and key.

    ``sources`` names the file each top-level key came from, where they differ.
    """
    validator_cls = jsonschema.validators.validator_for(schema(schema_name))
    validator = validator_cls(schema(schema_name), format_checker=validator_cls.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        where, message = _describe(error)
        top = where.split(".")[0].split("[")[0]
        raise PubflowError(message, path=(sources or {}).get(top, source), key=where)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing file or a syntax error names the file (and line)."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise PubflowError("file not found", path=path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PubflowError(f"invalid YAML: {problem}", path=path, key=where) from None


def _unique(config: Config, section: str, source: str | Path) -> None:
    names = [item["Name"] for item in config.get(section, [])]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise PubflowError(f"duplicate name {name!r}", path=source, key=f"{section}[{i}].Name")


def check_analysis(config: Config, source: str | Path,
                   sources: dict[str, str] | None = None) -> None:
    """Schema plus what a schema cannot say (cabinetry's own checks, cross-references).

    ``config`` is the resolved analysis (``steps.layout.resolve``); ``sources`` names the file
    each top-level key came from (the cabinetry config or pubflow's), for the error message.
    """
    validate(config, "analysis", source, sources)
    original, source = source, (sources or {}).get("Samples", source)
    for section in ("Regions", "Samples", "NormFactors", "Systematics"):
        _unique(config, section, source)
    data = [i for i, s in enumerate(config["Samples"]) if s.get("Data")]
    if len(data) != 1:
        raise PubflowError(
            f"exactly one sample must have 'Data: true' (found {len(data)})",
            path=source,
            key="Samples",
        )
    if "Simulation" in config and "Luminosity" not in config:
        raise PubflowError("required by Simulation (the simulated samples are normalised to "
                           "it)", path=(sources or {}).get("Simulation", source),
                           key="Luminosity")
    samples = {s["Name"] for s in config["Samples"]}
    for i, sim in enumerate(config.get("Simulation", {}).get("Samples", [])):
        if sim["Name"] not in samples:
            raise PubflowError(
                f"no sample named {sim['Name']!r} in Samples",
                path=source,
                key=f"Simulation.Samples[{i}].Name",
            )
        needed = {"breit_wigner": ("Mass", "Width"), "continuum": ("Slope",)}[sim["Process"]]
        for key in needed:
            if key not in sim:
                raise PubflowError(
                    f"required for Process {sim['Process']!r}",
                    path=source,
                    key=f"Simulation.Samples[{i}].{key}",
                )
    for i, name in enumerate(config.get("Candidates", {}).get("Samples", [])):
        if name not in samples:
            raise PubflowError(f"no sample named {name!r} in Samples",
                               path=(sources or {}).get("Candidates", original),
                               key=f"Candidates.Samples[{i}]")
    _check_input_policy(config, (sources or {}).get("InputPolicy", original), samples)
    scan.check_scan(config, (sources or {}).get("Scan", original))
    for i, region in enumerate(config["Regions"]):
        edges = region.get("Binning", [])
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise PubflowError(
                "bin edges must increase", path=source, key=f"Regions[{i}].Binning"
            )
    cabinetry_options.check(config, source)


def _check_input_policy(config: Config, source: str | Path, samples: set[str]) -> None:
    """Each ``InputPolicy`` entry names a sample (or the scan's sample pattern), once."""
    pattern = config.get("Scan", {}).get("Sample", {}).get("Name")
    seen: set[str] = set()
    for i, entry in enumerate(config.get("InputPolicy", [])):
        name = entry["Sample"]
        if name not in samples and name != pattern:
            raise PubflowError(f"no sample named {name!r} in Samples"
                               + (f" (nor the scan's {pattern!r})" if pattern else ""),
                               path=source, key=f"InputPolicy[{i}].Sample")
        if name in seen:
            raise PubflowError(f"sample {name!r} is given twice", path=source,
                               key=f"InputPolicy[{i}].Sample")
        seen.add(name)


def resolve_analysis(settings: Any, source: str | Path) -> Config:
    """pubflow's config (``Analysis`` naming the cabinetry config) resolved and validated."""
    try:
        config = layout.resolve(settings, str(source))
    except layout.ConfigError as err:
        raise PubflowError(str(err)) from None
    check_analysis(config, source, layout.sources(settings, str(source)))
    return config


def load_analysis(path: str | Path) -> Config:
    """Load pubflow's config (or a resolved one, or a cabinetry config) and validate it."""
    return resolve_analysis(load_yaml(path), path)


def load_datasets(path: str | Path) -> dict[str, Any]:
    """Load the dataset manifest and validate it against its schema."""
    manifest = load_yaml(path)
    validate(manifest, "datasets", path)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("config", "Resolve the workflow's config into the file every step reads.")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--settings", help="the config Snakemake was given, as JSON")
    given.add_argument("--settings-base64", metavar="TEXT",
                       help="the same, base64-encoded (as the workflow passes it)")
    p.add_argument("--source", default="the workflow config",
                   help="where the settings came from (named in error messages)")
    p.add_argument("--output", required=True, help="resolved config to write (JSON)")
    return p


def main(args: argparse.Namespace) -> None:
    try:
        text = args.settings or base64.urlsafe_b64decode(args.settings_base64).decode()
        settings = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise PubflowError(f"the settings are not base64-encoded JSON ({one_line(err)})"
                           ) from None
    write_json(args.output, resolve_analysis(settings, args.source))


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
