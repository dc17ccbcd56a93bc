"""Load and validate the analysis config and the dataset manifest, at the door.

Schema errors become one line naming the file and the key path, e.g.
``inputs/analysis.yaml: Regions[0].Binnning: unknown key (did you mean 'Binning'?)``.
"""

from __future__ import annotations

import difflib
import itertools
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from steps.errors import PubflowError

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
    return key_path(path), error.message


def validate(instance: Any, schema_name: str, source: str | Path) -> None:
    """Validate against one of our schemas; raise ``PubflowError`` naming file and key."""
    validator_cls = jsonschema.validators.validator_for(schema(schema_name))
    validator = validator_cls(schema(schema_name), format_checker=validator_cls.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        where, message = _describe(error)
        raise PubflowError(message, path=source, key=where)


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


def check_analysis(config: Config, source: str | Path) -> None:
    """Schema plus what a schema cannot say (cabinetry's own checks, cross-references)."""
    validate(config, "analysis", source)
    for section in ("Regions", "Samples", "NormFactors", "Systematics"):
        _unique(config, section, source)
    data = [i for i, s in enumerate(config["Samples"]) if s.get("Data")]
    if len(data) != 1:
        raise PubflowError(
            f"exactly one sample must have 'Data: true' (found {len(data)})",
            path=source,
            key="Samples",
        )
    samples = {s["Name"] for s in config["Samples"]}
    systematics = {s["Name"] for s in config.get("Systematics", [])}
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
    for i, name in enumerate(config.get("Scan", {}).get("Systematics", [])):
        if name not in systematics:
            raise PubflowError(
                f"no systematic named {name!r} in Systematics",
                path=source,
                key=f"Scan.Systematics[{i}]",
            )
    for i, region in enumerate(config["Regions"]):
        edges = region.get("Binning", [])
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise PubflowError(
                "bin edges must increase", path=source, key=f"Regions[{i}].Binning"
            )


def load_analysis(path: str | Path) -> Config:
    """Load ``analysis.yaml`` and validate it (schema and cross-references)."""
    config = load_yaml(path)
    check_analysis(config, path)
    return config


def load_datasets(path: str | Path) -> dict[str, Any]:
    """Load the dataset manifest and validate it against its schema."""
    manifest = load_yaml(path)
    validate(manifest, "datasets", path)
    return manifest
