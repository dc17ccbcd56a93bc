"""validate: check every published artefact with the tool its consumer uses.

* the analysis config and the dataset manifest: pubflow's own loaders (``steps.config``);
* the workspace: pyhf's JSON schema, then ``pyhf.Workspace(spec).model()``;
* the patchset: ``pyhf.PatchSet`` (schema), its digest against the workspace
  (``pyhf.utils.digest``), and every patch applied, giving a valid workspace and model;
* the HEPData archive: hepdata-validator's ``FullSubmissionValidator``, and the likelihoods
  in it (its HistFactory resource) must be the validated workspace and patchset;
* what of the inputs was processed, as the record states it (its ``processed_inputs.json``):
  every sample's processed fraction is reported, and must reach the floor its ``InputPolicy``
  sets (``MinProcessedFraction``; 1 for data and 0.95 for simulation that skips unreadable
  files, unless set);
* the other published outputs (``--outputs``: fit results, limits, figures), each as its
  reader takes it: JSON strictly (no NaN or infinity, which other JSON parsers refuse), the fit
  results and the limits against the shapes the HEPData step reads them with; PNG by Pillow
  (decoded in full); PDF by its structure (header, cross-reference offset, end marker).

Every file a publisher sends must be in the report (see :mod:`steps.publish.gate`).

The report is written only when every check passes; otherwise the step fails naming the first
failing artefact and its first problem (all problems are logged), and removes a stale report,
so the workflow's final target cannot exist for an invalid artefact.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import logging
import tarfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steps import __version__, cli, hepdata, layout
from steps.config import load_analysis, load_datasets
from steps.datasets import PLACEHOLDER, unfilled
from steps.errors import PubflowError
from steps.io import sha256sum, write_json

log = logging.getLogger(__name__)

#: Longest message kept in the one-line error (the report keeps them whole).
MAX_ERROR_CHARS = 400


def _count(n: int, word: str, plural: str | None = None) -> str:
    """``1 bin``, ``3 bins``; ``plural`` for irregular words."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def tool(package: str) -> str:
    """``"<package> <installed version>"``."""
    return f"{package} {importlib.metadata.version(package)}"


@dataclass
class Check:
    """The verdict on one artefact.

    Attributes:
        artefact: Path of the file checked.
        tool: The tool that checked it, with its version.
        valid: Whether the artefact passed.
        messages: Problems found (one line each); empty when valid.
        summary: What was checked, for the report.
        sha256: Digest of the file checked (None if it could not be read).
        details: What a check found, for machines (only where there is more than the
            summary says; left out of the report when None).
    """

    artefact: str
    tool: str
    valid: bool = True
    messages: list[str] = field(default_factory=list)
    summary: str = ""
    sha256: str | None = None
    details: dict[str, Any] | None = None

    def fail(self, message: str) -> None:
        """Record a problem (whitespace collapsed to one line)."""
        self.valid = False
        self.messages.append(" ".join(str(message).split()))


def _begin(path: str | Path, tool_name: str) -> Check:
    check = Check(artefact=str(path), tool=tool_name)
    if not Path(path).is_file():
        check.fail("file not found")
    else:
        check.sha256 = sha256sum(path)
    return check


def _read_json(check: Check) -> Any:
    """The artefact's JSON, or None (with the problem recorded)."""
    if not check.valid:
        return None
    try:
        return json.loads(Path(check.artefact).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        check.fail(f"invalid JSON: {err}")
        return None


def _check_loaded(path: str | Path, loader: Callable[[str | Path], Any], loader_name: str,
                  summarise: Callable[[Any], str]) -> Check:
    """An input loaded as every step loads it, by ``loader`` (``steps.config.<loader_name>``).

    Args:
        path: The input.
        loader: The loader; its PubflowError is the problem.
        loader_name: Its name in :mod:`steps.config`, for the check's tool.
        summarise: What the loaded input holds, for the report.
    """
    check = _begin(path, f"pubflow {__version__} (steps.config.{loader_name})")
    if check.valid:
        try:
            loaded = loader(path)
        except PubflowError as err:
            check.fail(err.detail)
        else:
            check.summary = summarise(loaded)
    return check


def check_config(path: str | Path) -> Check:
    """The analysis config, loaded as every step loads it."""
    return _check_loaded(path, load_analysis, "load_analysis",
                         lambda config: (f"{_count(len(config['Regions']), 'region')}, "
                                         f"{_count(len(config['Samples']), 'sample')}, "
                                         f"POI {config['General']['POI']}"))


def check_datasets(path: str | Path) -> Check:
    """The dataset manifest, loaded as every step loads it, with no field left to fill in."""
    check = _check_loaded(path, load_datasets, "load_datasets",
                          lambda manifest: f"{_count(len(manifest['files']), 'input file')} "
                                           "listed")
    if check.valid:
        # steps run on an unfilled manifest; what is published must say where its data is from
        for key in unfilled(load_datasets(path)):
            check.fail(f"{key}: still the placeholder {PLACEHOLDER!r} of "
                       "steps.datasets add: write it (or delete the key, if optional)")
    return check


def schema_message(err: Exception) -> str:
    """One line for a pyhf schema error: where, and what (an unknown type named as such)."""
    import pyhf

    if not isinstance(err, pyhf.exceptions.InvalidSpecification):
        return f"{type(err).__name__}: {err}"
    parent = err.parent
    where = err.path or "(top level)"
    if parent.validator in ("anyOf", "oneOf") and parent.context:
        # the alternatives differ by a constant (e.g. a modifier's 'type'): name that key
        allowed: dict[tuple[Any, ...], list[Any]] = {}
        for sub in parent.context:
            if sub.validator == "const":
                allowed.setdefault(tuple(sub.relative_path), []).append(sub.validator_value)
        for key, values in sorted(allowed.items(), key=lambda item: -len(item[1])):
            value: Any = parent.instance
            try:
                for part in key:
                    value = value[part]
            except (KeyError, IndexError, TypeError):
                continue
            if value not in values:
                path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in key)
                return f"{path}: {value!r} is not one of {sorted(set(values))}"
        return f"{where}: matches none of the allowed forms ({parent.validator})"
    return f"{where}: {parent.message}"


def check_workspace(path: str | Path) -> tuple[Check, dict[str, Any] | None]:
    """pyhf's workspace schema, then the model built from it.

    Returns:
        The check, and the workspace specification if it could be read as JSON.
    """
    import pyhf

    check = _begin(path, tool("pyhf"))
    spec = _read_json(check)
    if spec is None:
        return check, None
    try:
        pyhf.schema.validate(spec, "workspace.json")
        workspace = pyhf.Workspace(spec)
        model = workspace.model()
        workspace.data(model)
    except Exception as err:  # any failure of pyhf's own reading makes the file unusable
        check.fail(schema_message(err))
        return check, spec
    check.summary = (f"{_count(len(model.config.channels), 'channel')}, "
                     f"{_count(model.config.nmaindata, 'bin')}, "
                     f"{_count(model.config.npars, 'parameter')}, "
                     f"POI {model.config.poi_name}; "
                     f"digest sha256 {pyhf.utils.digest(spec)}")
    return check, spec


def check_patchset(
    path: str | Path, workspace: dict[str, Any] | None
) -> tuple[Check, dict[str, Any] | None]:
    """pyhf's patchset schema, its digest against the workspace, and every patch applied.

    Returns:
        The check, and the patchset specification if it could be read as JSON.
    """
    import pyhf

    check = _begin(path, tool("pyhf"))
    spec = _read_json(check)
    if spec is None:
        return check, None
    try:
        patchset = pyhf.PatchSet(spec)
    except Exception as err:  # schema or duplicate patches: pyhf refuses the file
        check.fail(schema_message(err))
        return check, spec
    if workspace is None:
        check.fail("cannot be checked against the workspace: the workspace is unreadable")
        return check, spec
    try:
        patchset.verify(workspace)
    except pyhf.exceptions.PatchSetVerificationError:
        check.fail(
            "digest does not match the workspace: made for "
            + ", ".join(f"{alg} {value}" for alg, value in patchset.digests.items())
            + f", the workspace has sha256 {pyhf.utils.digest(workspace)}"
        )
        return check, spec
    for patch in patchset:
        try:
            patched = patchset.apply(workspace, patch.name)
            patched.model()
        except Exception as err:  # a patch that does not give a usable workspace
            check.fail(f"patch {patch.name}: {schema_message(err)}")
    labels = ", ".join(patchset.labels)
    check.summary = (f"{_count(len(patchset), 'patch', 'patches')} ({labels}: "
                     + ", ".join(", ".join(f"{v:g}" for v in p.values) for p in patchset)
                     + "), each applied to the workspace and built into a model")
    return check, spec


def check_submission(path: str | Path) -> Check:
    """The HEPData archive, with hepdata-validator (all files, schemas, resources)."""
    check = _begin(path, tool("hepdata-validator"))
    if not check.valid:
        return check
    for message in hepdata.hepdata_messages(path):
        check.fail(message)
    if check.valid:
        with tarfile.open(path) as tar:
            names = tar.getnames()
        tables = [n for n in names if n.endswith(".yaml") and n != "submission.yaml"]
        check.summary = f"{_count(len(tables), 'data table')}, {_count(len(names), 'file')}"
    return check


def _likelihood_members(archive: str | Path) -> tuple[str, dict[str, bytes]]:
    """The HistFactory resource of a HEPData archive: its name and its members."""
    with tarfile.open(archive) as tar:
        by_name = {m.name: m for m in tar.getmembers() if m.isfile()}
        if "submission.yaml" not in by_name:
            raise ValueError("no submission.yaml")
        docs = list(yaml.safe_load_all(tar.extractfile(by_name["submission.yaml"])))
        resources = [r for d in docs if d for r in d.get("additional_resources", [])
                     if r.get("type") == "HistFactory"]
        if not resources:
            raise ValueError("no additional resource of type HistFactory (the likelihoods)")
        location = resources[0]["location"]
        if location not in by_name:
            raise ValueError(f"HistFactory resource {location} is not in the archive")
        inner = tar.extractfile(by_name[location]).read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        return location, {m.name: tar.extractfile(m).read() for m in tar.getmembers()
                          if m.isfile()}


def check_published_likelihoods(
    path: str | Path,
    workspace: tuple[str | Path, dict[str, Any] | None],
    patchset: tuple[str | Path, dict[str, Any] | None] | None,
) -> Check:
    """The archive's likelihoods are the workspace and patchset validated here.

    Without a signal scan (``patchset`` None) the archive must hold no patchset either.

    Args:
        path: The HEPData archive.
        workspace: Path and content (None if unreadable) of the workspace.
        patchset: Path and content (None if unreadable) of the patchset.
    """
    import pyhf

    check = _begin(path, f"{tool('pyhf')} (pyhf.utils.digest)")
    if not check.valid:
        return check
    try:
        location, members = _likelihood_members(path)
    except (tarfile.TarError, OSError, ValueError, yaml.YAMLError) as err:
        check.fail(f"likelihoods unreadable: {err}")
        return check
    expected = {hepdata.BKG_ONLY_NAME: workspace}
    if patchset is not None:
        expected[hepdata.PATCHSET_NAME] = patchset
    elif hepdata.PATCHSET_NAME in members:
        check.fail(f"{location}: holds a {hepdata.PATCHSET_NAME} that was not validated")
    for name, (source, spec) in expected.items():
        if name not in members:
            check.fail(f"{location}: no {name}")
            continue
        try:
            published = json.loads(members[name])
        except json.JSONDecodeError as err:
            check.fail(f"{location}: {name} is not JSON ({err})")
            continue
        if spec is None:
            check.fail(f"{location}: {name} not compared, {source} is unreadable")
        elif pyhf.utils.digest(published) != pyhf.utils.digest(spec):
            check.fail(f"{location}: {name} differs from {source} (pyhf digest)")
    if hepdata.README_NAME not in members:
        check.fail(f"{location}: no {hepdata.README_NAME}")
    if check.valid:
        check.summary = f"{location} holds {', '.join(sorted(members))}, identical digests"
    return check


def _processed_inputs(archive: str | Path) -> dict[str, Any]:
    """The per-sample record of processed inputs a HEPData archive holds (a resource)."""
    name = hepdata.PROCESSED_INPUTS
    with tarfile.open(archive) as tar:
        by_name = {m.name: m for m in tar.getmembers() if m.isfile()}
        if "submission.yaml" not in by_name:
            raise ValueError("no submission.yaml")
        docs = list(yaml.safe_load_all(tar.extractfile(by_name["submission.yaml"])))
        if not any(r.get("location") == name for d in docs if d
                   for r in d.get("additional_resources", [])):
            raise ValueError(f"no additional resource {name}: the record does not say what "
                             "of its inputs was processed")
        if name not in by_name:
            raise ValueError(f"resource {name} is not in the archive")
        content = json.loads(tar.extractfile(by_name[name]).read())
    if not isinstance(content, dict) or content.get("format") != hepdata.PROCESSED_INPUTS_FORMAT:
        raise ValueError(f"{name} is not {hepdata.PROCESSED_INPUTS_FORMAT}")
    return content["samples"]


def check_processed_inputs(path: str | Path, config_path: str | Path) -> Check:
    """Each sample's processed fraction, as the HEPData record states it, against the floor
    the config's ``InputPolicy`` sets (``MinProcessedFraction``).

    Args:
        path: The HEPData archive.
        config_path: The analysis config (the samples, and their floors).
    """
    check = _begin(path, f"pubflow {__version__} (processed inputs, InputPolicy)")
    if not check.valid:
        return check
    try:
        config = load_analysis(config_path)
    except PubflowError:
        check.fail(f"not checked: the config {config_path} is invalid")
        return check
    try:
        stated = _processed_inputs(path)
    except (tarfile.TarError, OSError, ValueError, KeyError, yaml.YAMLError) as err:
        check.fail(f"processed inputs unreadable: {err}")
        return check
    details: dict[str, Any] = {}
    for sample in layout.histogram_config(config)["Samples"]:
        name = sample["Name"]
        floor = layout.min_processed_fraction(config, name, bool(sample.get("Data")))
        s = stated.get(name)
        if not isinstance(s, dict) or "processed_fraction" not in s:
            check.fail(f"{hepdata.PROCESSED_INPUTS}: no processed fraction of sample {name!r}")
            continue
        fraction = float(s["processed_fraction"])
        skipped = s.get("skipped", [])
        details[name] = {"processed_fraction": fraction, "min_processed_fraction": floor,
                         "entries_expected": s.get("entries_expected"),
                         "entries_processed": s.get("entries_processed"),
                         "skipped": skipped}
        # counts divided once, so a fraction equal to the floor may differ in the last bit
        if fraction < floor - 1e-12:
            first = (f"; {len(skipped)} file(s) skipped as unreadable, the first "
                     f"{skipped[0]['file']}: {skipped[0]['reason']}" if skipped else "")
            check.fail(f"sample {name}: {s.get('entries_processed')} of "
                       f"{s.get('entries_expected')} entries processed (fraction "
                       f"{fraction:.4g}), below its MinProcessedFraction {floor:g} "
                       f"(InputPolicy){first}")
    check.details = {"samples": details}
    if check.valid:
        check.summary = "processed fraction of the input entries: " + ", ".join(
            f"{name} {d['processed_fraction']:.4g}"
            + (f" (floor {d['min_processed_fraction']:g}, {len(d['skipped'])} file(s) "
               "skipped)" if d["skipped"] else "")
            for name, d in details.items())
    return check


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (other JSON readers refuse it)")


def check_result_json(path: str | Path) -> Check:
    """A JSON result, strictly: fit results and limits also in the shape the HEPData step
    reads them (``steps.hepdata.FIT_SCHEMA``, ``LIMITS_SCHEMA``)."""
    path = Path(path)
    schema = {"results.json": hepdata.FIT_SCHEMA,
              "limits.json": hepdata.LIMITS_SCHEMA}.get(path.name)
    check = _begin(path, tool("jsonschema") if schema else "json (Python, strict)")
    if not check.valid:
        return check
    try:
        obj = json.loads(path.read_text(), parse_constant=_strict_constant)
    except (ValueError, UnicodeDecodeError) as err:
        check.fail(f"invalid JSON: {err}")
        return check
    if schema is not None:
        import jsonschema

        validator = jsonschema.Draft202012Validator(schema)
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            where = "/".join(map(str, error.absolute_path)) or "(top level)"
            check.fail(f"{where}: {schema_message(error)}")
    if check.valid:
        check.summary = (f"{_count(len(obj), 'key')}" if isinstance(obj, dict)
                         else type(obj).__name__)
    return check


def check_png(path: str | Path) -> Check:
    """A PNG, decoded in full by Pillow (what HEPData and image viewers read it with)."""
    check = _begin(path, tool("pillow"))
    if check.valid:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                if image.format != "PNG":
                    check.fail(f"not a PNG but {image.format}")
                else:
                    image.load()
                    check.summary = f"PNG, {image.width} x {image.height} pixels"
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            check.fail(f"not a readable image: {err}")
    return check


def check_pdf(path: str | Path) -> Check:
    """A PDF's structure: the ``%PDF-`` header, and at its end the cross-reference offset
    (``startxref``, pointing inside the file) and the ``%%EOF`` marker, which a reader needs
    before it can read anything else."""
    check = _begin(path, f"pubflow {__version__} (PDF structure)")
    if not check.valid:
        return check
    data = Path(path).read_bytes()
    tail = data[-1024:]
    if not data.startswith(b"%PDF-"):
        check.fail("no %PDF- header")
    elif b"%%EOF" not in tail or b"startxref" not in tail:
        check.fail("truncated: no startxref / %%EOF at its end")
    else:
        offset = tail[tail.rindex(b"startxref") + len(b"startxref"):].split()[0]
        if not offset.isdigit() or int(offset) >= len(data):
            check.fail(f"startxref points outside the file ({offset!r})")
        else:
            check.summary = f"PDF {data[5:8].decode('ascii', 'replace')}, {len(data)} bytes"
    return check


OUTPUT_CHECKS: dict[str, Callable[[str | Path], Check]] = {
    ".json": check_result_json, ".png": check_png, ".pdf": check_pdf}


def check_output(path: str | Path) -> Check:
    """A published output, by its kind (:data:`OUTPUT_CHECKS`)."""
    checker = OUTPUT_CHECKS.get(Path(path).suffix.lower())
    if checker is None:
        check = _begin(path, f"pubflow {__version__}")
        check.fail(f"no check for {Path(path).suffix or 'files without a suffix'} "
                   f"(known: {', '.join(OUTPUT_CHECKS)})")
        return check
    return checker(path)


def validate_all(
    *,
    config: str | Path,
    datasets: str | Path,
    workspace: str | Path,
    patchset: str | Path | None,
    submission: str | Path,
    outputs: tuple[str | Path, ...] = (),
) -> list[Check]:
    """Every check, upstream artefacts first (so the first failure is the root cause).

    ``patchset`` is None for an analysis without a signal scan; ``outputs`` are the other
    files published (fit results, limits, figures).
    """
    checks = [check_config(config), check_datasets(datasets)]
    workspace_check, workspace_spec = check_workspace(workspace)
    checks.append(workspace_check)
    published_patchset = None
    if patchset is not None:
        patchset_check, patchset_spec = check_patchset(patchset, workspace_spec)
        checks.append(patchset_check)
        published_patchset = (patchset, patchset_spec)
    checks.append(check_submission(submission))
    checks.append(check_processed_inputs(submission, config))
    checks.append(check_published_likelihoods(
        submission, (workspace, workspace_spec), published_patchset))
    checks += [check_output(path) for path in outputs]
    return checks


def write_report(checks: list[Check], report: str | Path) -> None:
    """Write the report if every check passed; otherwise log all problems and fail.

    Raises:
        PubflowError: Naming the first failing artefact and its first problem.
    """
    failed = [c for c in checks if not c.valid]
    for check in checks:
        log_check: Callable[..., None] = log.info if check.valid else log.error
        log_check("%s: %s (%s)%s", check.artefact, "valid" if check.valid else "INVALID",
                  check.tool, f": {check.summary}" if check.valid and check.summary else "")
        for message in check.messages:
            log.error("  %s", message)
    if failed:
        stale = Path(report)
        if stale.is_file():
            stale.unlink()
            log.info("removed the stale report %s", stale)
        first = failed[0]
        message = first.messages[0]
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS - 3] + "..."
        problems = sum(len(c.messages) for c in failed)
        more = ""
        if problems > 1:
            more = f" ({problems - 1} more problem{'s' if problems > 2 else ''} logged)"
        raise PubflowError(f"{message}{more}", path=first.artefact)
    write_json(report, {"valid": True, "checks": [
        {k: v for k, v in asdict(c).items() if k != "details" or v is not None}
        for c in checks]})
    log.info("all %d checks passed; report %s", len(checks), report)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("validate", __doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="analysis config (results/config.json, or inputs/pubflow.yaml)")
    p.add_argument("--datasets", required=True, help="dataset manifest (inputs/datasets.yaml)")
    p.add_argument("--workspace", required=True, help="pyhf workspace (JSON)")
    p.add_argument("--patchset", help="pyhf patchset (JSON), when the analysis has a Scan")
    p.add_argument("--submission", required=True, help="HEPData archive (submission.tar.gz)")
    p.add_argument("--outputs", nargs="*", default=[], metavar="FILE",
                   help="the other published outputs: fit results, limits, figures "
                   "(.json, .png, .pdf)")
    p.add_argument("--report", required=True, help="report to write when all is valid (JSON)")
    return p


def main(args: argparse.Namespace) -> None:
    checks = validate_all(config=args.config, datasets=args.datasets, workspace=args.workspace,
                          patchset=args.patchset, submission=args.submission,
                          outputs=tuple(args.outputs))
    write_report(checks, args.report)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
