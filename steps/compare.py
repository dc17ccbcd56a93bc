"""compare: a run's published numbers against a reference, quantity by quantity.

A *snapshot* flattens what a run publishes into named quantities: every histogram's binning,
yield and bin contents (``histograms/Dimuon_Data/bin[12]``), the pyhf workspace and patchset
as digests after sorting (``model/workspace_sha256_sorted``), every fitted value
(``fit/mu``, ``fit/parameters/lumi/bestfit``), every limit (``limits/mass_70/observed``) and,
against a HEPData record, every number of every table (``hepdata/Event yields/...``).
Each part of a HEPData quantity's name (table, column header, row, uncertainty label) is
free text written by an analyst: a ``/`` in it is written ``%2F`` (and ``%`` as ``%25``), so
that ``/`` only ever separates the parts (``hepdata/Table 3/1%2FSIG * D(SIG)%2FDPT/0-25``).

The reference is either a previous run checked into the repository (``inputs/reference/``,
written by :func:`write_reference`) or a HEPData record pulled through HEPData's public API
(:func:`fetch_record`), whose tables are compared with the tables the new run would submit.

Each quantity is judged by the first rule of the tolerance file (``tolerances.yaml``, schema
``steps/schemas/tolerances.schema.json``) whose pattern matches its name: exact, digest,
relative, absolute, or in units of the reference's own standard deviation (sigma).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlparse

import numpy as np
import yaml

from steps import __version__, layout
from steps.config import load_yaml, validate
from steps.errors import PubflowError, one_line
from steps.io import read_json, write_json

log = logging.getLogger(__name__)

Value = float | str | tuple[float, ...]
Status = Literal["identical", "within", "failed", "missing", "new"]
Mode = Literal["exact", "digest", "relative", "absolute", "sigma"]

#: The files of a reference directory, one per section of a run's outputs.
REFERENCE_FILES = {
    "histograms": "histograms.json",
    "model": "model.json",
    "fit": "fit.json",
    "limits": "limits.json",
}
REFERENCE_METADATA = "metadata.json"
TOLERANCES_FILE = "tolerances.yaml"
#: The five expected limits of ``limits.json``, in order.
EXPECTED_LABELS = ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")
HEPDATA_SITE = "https://www.hepdata.net"
_USER_AGENT = f"pubflow/{__version__} (reproduce; +https://www.hepdata.net/formats)"


@dataclass(frozen=True)
class Quantity:
    """One published number (or digest, or list of bin edges).

    Attributes:
        name: Unique name, a ``/``-separated path such as ``fit/parameters/lumi/bestfit``.
        value: A number, a checksum string, or a tuple of numbers (bin edges).
        figure: The distribution this quantity is a point of, for overlay plots.
        series: Which curve of that figure (``content``, ``observed`` ...).
        x: Where the point sits: a bin ``(low, high)`` or a position ``(x,)``.
        scale: One standard deviation of the quantity, for tolerances in sigma.
    """

    name: str
    value: Value
    figure: str | None = None
    series: str | None = None
    x: tuple[float, ...] | None = None
    scale: float | None = None


Snapshot = dict[str, Quantity]


def _add(snapshot: Snapshot, quantity: Quantity) -> None:
    name = quantity.name
    n = 2
    while name in snapshot:  # two columns with the same header: keep both, numbered
        name = f"{quantity.name} #{n}"
        n += 1
    snapshot[name] = Quantity(name, quantity.value, quantity.figure, quantity.series,
                              quantity.x, quantity.scale)


# -- a run's outputs ----------------------------------------------------------------------------


def _histogram_folder(workspace: Path) -> Path:
    """The histogram folder the workspace's config names (cabinetry's ``HistogramFolder``)."""
    config = layout.workspace_config(workspace)
    folder = config.get("General", {}).get("HistogramFolder", "results/histograms")
    return workspace / folder.rstrip("/")


def _read_output(path: Path) -> Any:
    try:
        return read_json(path)
    except FileNotFoundError:
        raise PubflowError("output not found (did the run finish?)", path=path) from None
    except json.JSONDecodeError as err:
        raise PubflowError(f"invalid JSON ({err})", path=path) from None


def read_histograms(workspace: Path) -> dict[str, dict[str, list[float]]]:
    """Every histogram of the merge summary with its contents: bins, yields, stdev."""
    summary_path = workspace / "results" / "histograms.json"
    summary = _read_output(summary_path)
    folder = _histogram_folder(workspace)
    out: dict[str, dict[str, list[float]]] = {}
    for name in sorted(summary):
        npz = folder / f"{name}.npz"
        try:
            with np.load(npz) as hist:
                out[name] = {key: [float(v) for v in hist[key]]
                             for key in ("bins", "yields", "stdev")}
        except FileNotFoundError:
            raise PubflowError(f"histogram {name} of {summary_path} not found",
                               path=npz) from None
        except (OSError, ValueError, KeyError) as err:
            raise PubflowError(f"unreadable histogram ({one_line(err)})", path=npz) from None
    return out


def sorted_patchset(patchset: Mapping[str, Any]) -> dict[str, Any]:
    """The patchset's content without its workspace digest, patches sorted by name.

    The digest of the workspace a patchset records changes when the workspace is merely
    reordered; the patches themselves are what a re-run must reproduce.
    """
    labels = patchset.get("metadata", {}).get("labels", [])
    patches = sorted(patchset.get("patches", []), key=lambda p: p["metadata"]["name"])
    return {"labels": labels, "patches": [
        {"name": p["metadata"]["name"], "values": p["metadata"]["values"], "patch": p["patch"]}
        for p in patches
    ]}


def model_digests(workspace_path: Path, patchset_path: Path) -> dict[str, str]:
    """pyhf digests of the workspace (after ``pyhf.Workspace.sorted``) and of the patchset.

    Raises:
        PubflowError: If a file is missing or the workspace is not a valid pyhf workspace.
    """
    import pyhf

    spec = _read_output(workspace_path)
    try:
        ordered = pyhf.Workspace.sorted(pyhf.Workspace(spec))
    except pyhf.exceptions.InvalidSpecification as err:
        raise PubflowError(f"invalid workspace ({one_line(err)})", path=workspace_path) from None
    patchset = _read_output(patchset_path)
    return {
        "workspace_sha256_sorted": pyhf.utils.digest(ordered),
        "patchset_sha256_sorted": pyhf.utils.digest(sorted_patchset(patchset)),
    }


def read_run(workspace: str | Path) -> dict[str, Any]:
    """The sections a snapshot is made of, from the ``results/`` of a workflow run."""
    workspace = Path(workspace)
    results = workspace / "results"
    return {
        "histograms": read_histograms(workspace),
        "model": model_digests(results / "model" / "workspace.json",
                               results / "model" / "patchset.json"),
        "fit": _read_output(results / "fit" / "results.json"),
        "limits": _read_output(results / "fit" / "limits.json"),
    }


def read_reference(directory: str | Path) -> dict[str, Any]:
    """The sections of a reference written by :func:`write_reference`."""
    directory = Path(directory)
    sections: dict[str, Any] = {}
    for section, name in REFERENCE_FILES.items():
        path = directory / name
        try:
            sections[section] = read_json(path)
        except FileNotFoundError:
            raise PubflowError("reference file not found (make the reference with "
                               "'python -m steps.reproduce --update-reference')",
                               path=path) from None
        except json.JSONDecodeError as err:
            raise PubflowError(f"invalid JSON ({err})", path=path) from None
    return sections


def reference_metadata(directory: str | Path) -> dict[str, Any]:
    """What a reference records about its making (empty if it records nothing)."""
    path = Path(directory) / REFERENCE_METADATA
    return read_json(path) if path.is_file() else {}


def write_reference(sections: Mapping[str, Any], directory: str | Path,
                    metadata: Mapping[str, Any]) -> None:
    """Write a run's sections and ``metadata`` as the reference in ``directory``.

    The tolerance file in ``directory`` is left as it is.
    """
    directory = Path(directory)
    for section, name in REFERENCE_FILES.items():
        write_json(directory / name, sections[section])
    write_json(directory / REFERENCE_METADATA, dict(metadata))


# -- snapshots ----------------------------------------------------------------------------------


def _number(value: Any) -> float | str:
    """A YAML/JSON value as a float when it is one, else as text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return str(value)


def contents_digest(histograms: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    """sha256 of every histogram's edges, contents and uncertainties as float64 bytes."""
    h = hashlib.sha256()
    for name in sorted(histograms):
        h.update(name.encode() + b"\0")
        for key in ("bins", "yields", "stdev"):
            h.update(np.asarray(histograms[name][key], dtype="<f8").tobytes())
    return h.hexdigest()


def _histogram_quantities(snapshot: Snapshot, histograms: Mapping[str, Any]) -> None:
    _add(snapshot, Quantity("histograms/contents_sha256", contents_digest(histograms)))
    for name in sorted(histograms):
        hist = histograms[name]
        bins = [float(b) for b in hist["bins"]]
        figure = f"histograms/{name}"
        _add(snapshot, Quantity(f"{figure}/bins", tuple(bins)))
        _add(snapshot, Quantity(f"{figure}/yield", float(np.sum(hist["yields"]))))
        for i, value in enumerate(hist["yields"]):
            x = (bins[i], bins[i + 1]) if i + 1 < len(bins) else None
            _add(snapshot, Quantity(f"{figure}/bin[{i}]", float(value), figure, "content", x))
        for i, value in enumerate(hist["stdev"]):
            _add(snapshot, Quantity(f"{figure}/stdev[{i}]", float(value)))


def _fit_quantities(snapshot: Snapshot, fit: Mapping[str, Any]) -> None:
    for key in ("mu", "mu_uncertainty", "twice_nll"):
        if key in fit:
            _add(snapshot, Quantity(f"fit/{key}", float(fit[key])))
    for key, value in sorted(fit.get("significance", {}).items()):
        _add(snapshot, Quantity(f"fit/significance/{key}", float(value)))
    for parameter in fit.get("parameters", []):
        for key in ("bestfit", "uncertainty"):
            _add(snapshot, Quantity(f"fit/parameters/{parameter['name']}/{key}",
                                    float(parameter[key])))
    for region, block in sorted(fit.get("regions", {}).items()):
        bins = [float(b) for b in block.get("bins", [])]

        def where(i: int, bins: list[float] = bins) -> tuple[float, ...] | None:
            return (bins[i], bins[i + 1]) if i + 1 < len(bins) else None

        base = f"fit/regions/{region}"
        for i, value in enumerate(block.get("data", [])):
            _add(snapshot, Quantity(f"{base}/data[{i}]", float(value), base, "data", where(i)))
        for stage in ("prefit", "postfit"):
            prediction = block.get(stage, {})
            for i, value in enumerate(prediction.get("total", [])):
                _add(snapshot, Quantity(f"{base}/{stage}/total[{i}]", float(value), base,
                                        f"{stage} total", where(i)))
            for i, value in enumerate(prediction.get("total_uncertainty", [])):
                _add(snapshot, Quantity(f"{base}/{stage}/total_uncertainty[{i}]",
                                        float(value)))
            for sample, summed in sorted(prediction.get("summed", {}).items()):
                for key in ("yield", "uncertainty"):
                    _add(snapshot, Quantity(f"{base}/{stage}/summed/{sample}/{key}",
                                            float(summed[key])))


def band_sigma(expected: Sequence[float]) -> float:
    """One standard deviation of an expected limit: half its +-1 sigma band's width."""
    return (float(expected[3]) - float(expected[1])) / 2


def _limit_point(point: Mapping[str, Any], labels: Sequence[str]) -> tuple[str, tuple]:
    """A limit point's patch name and its values in label order (``mass`` alone in limit
    files written before patches carried their names and values)."""
    if "patch" in point:
        return str(point["patch"]), tuple(float(point["values"][k]) for k in labels)
    return f"mass_{point['mass']:g}", (float(point["mass"]),)


def _limit_quantities(snapshot: Snapshot, limits: Mapping[str, Any]) -> None:
    labels = list(limits.get("labels", ["mass"]))
    points = sorted(((*_limit_point(p, labels), p) for p in limits.get("points", [])),
                    key=lambda item: item[1])
    for patch, values, point in points:
        base = f"limits/{patch}"
        x = values if len(values) == 1 else None  # the report overlays limits over one variable
        sigma = band_sigma(point["expected"])
        _add(snapshot, Quantity(f"{base}/observed", float(point["observed"]), "limits",
                                "observed", x, sigma))
        for label, value in zip(EXPECTED_LABELS, point["expected"], strict=True):
            _add(snapshot, Quantity(f"{base}/expected_{label}", float(value), "limits",
                                    f"expected {label}", x, sigma))
        for key in ("muhat",):
            if key in point:
                _add(snapshot, Quantity(f"{base}/{key}", float(point[key]), scale=sigma))
        for key in ("significance", "p0"):
            if key in point:
                _add(snapshot, Quantity(f"{base}/{key}", float(point[key]), "significance",
                                        key, x))


def snapshot(sections: Mapping[str, Any]) -> Snapshot:
    """Flatten a run's (or a reference's) sections into named quantities."""
    out: Snapshot = {}
    _histogram_quantities(out, sections["histograms"])
    for key, digest in sorted(sections["model"].items()):
        _add(out, Quantity(f"model/{key}", str(digest)))
    _fit_quantities(out, sections["fit"])
    _limit_quantities(out, sections["limits"])
    return out


# -- HEPData tables -----------------------------------------------------------------------------


def submission_tables(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``{table name: table content}`` of a HEPData submission folder (what would be sent)."""
    folder = Path(folder)
    index = folder / "submission.yaml"
    try:
        docs = list(yaml.safe_load_all(index.read_text()))
    except FileNotFoundError:
        raise PubflowError("HEPData submission not found (did the run finish?)",
                           path=index) from None
    tables: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc and "data_file" in doc:
            tables[doc["name"]] = yaml.safe_load((folder / doc["data_file"]).read_text())
    return tables


def name_part(text: str) -> str:
    """One part of a quantity's name, with ``/`` (and ``%``) percent-encoded.

    >>> name_part("sigma / pb")
    'sigma %2F pb'
    >>> name_part("100% CL")
    '100%25 CL'
    """
    return str(text).replace("%", "%25").replace("/", "%2F")


def _row_label(independent: Sequence[Mapping[str, Any]], i: int) -> tuple[str, tuple[float, ...]]:
    """A table row's label (``60-62.5``, ``70``, ``Zmumu``) and its x for plotting."""
    parts: list[str] = []
    x: tuple[float, ...] = (float(i),)
    for n, variable in enumerate(independent):
        values = variable.get("values", [])
        if i >= len(values):
            continue
        point = values[i]
        if "low" in point and "high" in point:
            low, high = _number(point["low"]), _number(point["high"])
            parts.append(f"{low:g}-{high:g}" if isinstance(low, float) and isinstance(high, float)
                         else f"{low}-{high}")
            if n == 0 and isinstance(low, float) and isinstance(high, float):
                x = (low, high)
        else:
            value = _number(point.get("value"))
            parts.append(f"{value:g}" if isinstance(value, float) else str(value))
            if n == 0 and isinstance(value, float):
                x = (value,)
    return ",".join(parts) or str(i), x


def _row_sigma(dependent: Sequence[Mapping[str, Any]], i: int) -> float | None:
    """Half the width of a '1 sigma' band given in the row (expected limits), if any."""
    for variable in dependent:
        values = variable.get("values", [])
        if i >= len(values):
            continue
        for error in values[i].get("errors", []) or []:
            label = str(error.get("label", "")).lower().replace(" ", "")
            band = error.get("asymerror")
            if label in ("1sigma", "+-1sigma", "68%") and isinstance(band, Mapping):
                plus, minus = _number(band.get("plus")), _number(band.get("minus"))
                if isinstance(plus, float) and isinstance(minus, float):
                    return (abs(plus) + abs(minus)) / 2
    return None


def hepdata_snapshot(tables: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """Every value and uncertainty of every table, named ``hepdata/<table>/<column>/<row>``."""
    out: Snapshot = {}
    for table_name in sorted(tables):
        table = tables[table_name]
        independent = table.get("independent_variables", [])
        dependent = table.get("dependent_variables", [])
        n_rows = max((len(v.get("values", [])) for v in dependent), default=0)
        for i in range(n_rows):
            row, x = _row_label(independent, i) if independent else (str(i), (float(i),))
            sigma = _row_sigma(dependent, i)
            for column, variable in enumerate(dependent):
                values = variable.get("values", [])
                if i >= len(values):
                    continue
                header = str((variable.get("header") or {}).get("name", f"column{column}"))
                figure = f"hepdata/{name_part(table_name)}"
                base = f"{figure}/{name_part(header)}/{name_part(row)}"
                point = values[i]
                _add(out, Quantity(base, _number(point.get("value")), figure, header, x, sigma))
                for j, error in enumerate(point.get("errors", []) or []):
                    label = name_part(str(error.get("label") or f"error{j}"))
                    if "symerror" in error:
                        _add(out, Quantity(f"{base}/{label}", _number(error["symerror"]),
                                           scale=sigma))
                    elif isinstance(error.get("asymerror"), Mapping):
                        for side in ("plus", "minus"):
                            _add(out, Quantity(f"{base}/{label} {side}",
                                               _number(error["asymerror"].get(side)),
                                               scale=sigma))
    return out


@dataclass(frozen=True)
class RecordId:
    """A HEPData record as ``/record/<path>`` addresses it, with a version if one was named."""

    path: str
    version: int | None = None


def parse_record(identifier: str) -> RecordId:
    """Read a record identifier: ``ins1234567``, a HEPData record id, a DOI or a URL.

    >>> parse_record("ins1234567")
    RecordId(path='ins1234567', version=None)
    >>> parse_record("10.17182/hepdata.1234.v2/t3")
    RecordId(path='1234', version=2)
    >>> parse_record("https://www.hepdata.net/record/ins99?version=3")
    RecordId(path='ins99', version=3)

    Raises:
        PubflowError: If the identifier is none of these.
    """
    text = identifier.strip()
    version: int | None = None
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        if parsed.netloc.lower().endswith("doi.org"):
            text = parsed.path.lstrip("/")
        else:
            match = re.search(r"/record/([^/?#]+)", parsed.path)
            if not match:
                raise PubflowError(f"not a HEPData record URL: {identifier}")
            text = match.group(1)
            query = re.search(r"(?:^|&)version=(\d+)", parsed.query)
            version = int(query.group(1)) if query else None
    if text.lower().startswith("doi:"):
        text = text[4:]
    doi = re.fullmatch(r"10\.17182/hepdata\.(\d+)(?:\.v(\d+))?(?:/t\d+)?", text, re.IGNORECASE)
    if doi:
        return RecordId(doi.group(1), int(doi.group(2)) if doi.group(2) else None)
    if re.fullmatch(r"(ins)?\d+", text):
        return RecordId(text, version)
    raise PubflowError(f"not a HEPData record: {identifier!r} (give ins<INSPIRE id>, a HEPData "
                       "record id, a HEPData DOI 10.17182/hepdata.<id>.v<version> or a URL)")


@dataclass
class HepdataRecord:
    """A record's tables as HEPData serves them.

    Attributes:
        url: The record's JSON address that was read.
        version: The record version whose tables these are (the one HEPData served).
        tables: ``{table name: table content}`` (HEPData's YAML table format).
        metadata: What the record says about itself (title, DOI, INSPIRE id, versions).
        table_urls: ``{table name: the address it was read from}``.
    """

    url: str
    version: int | None
    tables: dict[str, dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    table_urls: dict[str, str] = field(default_factory=dict)


def _is_html(response: Any) -> bool:
    """HEPData's error pages (``display_error``, the "processing" page) are HTML served
    with status 200: recognise them by their type or their first characters."""
    kind = str(response.headers.get("Content-Type", "")).lower()
    start = response.text.lstrip()[:100].lower()
    return "html" in kind or start.startswith(("<!doctype html", "<html"))


def _html_message(text: str) -> str:
    """The words of an HTML error page, briefly (its title and first lines)."""
    words = " ".join(re.sub(r"<[^>]*>", " ", re.sub(
        r"(?is)<(script|style|head)\b.*?</\1>", " ", text)).split())
    return (words[:160] + "...") if len(words) > 160 else words


def _get(session: Any, url: str, timeout: float, what: str) -> Any:
    import requests

    last: Exception | None = None
    for _attempt in range(3):
        try:
            response = session.get(url, timeout=timeout)
        except requests.RequestException as err:
            last = err
            continue
        if response.status_code >= 500:
            last = RuntimeError(f"HTTP {response.status_code}")
            continue
        if response.status_code != 200:
            raise PubflowError(f"HEPData answered HTTP {response.status_code} for {what}",
                               path=url)
        if _is_html(response):
            said = _html_message(response.text)
            raise PubflowError(f"HEPData answered with an HTML page, not {what}"
                               + (f" (the page says: {said})" if said else ""), path=url)
        return response
    raise PubflowError(f"HEPData unreachable ({one_line(last or RuntimeError('?'))})", path=url)


def _table_path(name: str) -> str:
    """A table name as a path of HEPData's ``/download/table/<id>/<path:table_name>/...``
    routes: percent-encoded except ``/`` (HEPData's own links leave ``/`` as it is and
    escape ``%`` as ``%25`` and ``\\`` as ``%5C``; ``quote`` does that and more)."""
    return quote(name, safe="/")


def _table_owner(entry: Mapping[str, Any], body: Mapping[str, Any], record: RecordId) -> str:
    """``ins<id>`` or the record id under which HEPData files a table's downloads.

    Taken from the table's own link when it has one, else as HEPData's ``process_ctx`` makes
    it: ``ins<inspire_id>`` for a finished record with an INSPIRE id, else its record id.
    """
    link = (entry.get("data") or {}).get("yaml") if isinstance(entry.get("data"), dict) else None
    if isinstance(link, str):
        match = re.search(r"/download/table/(ins\d+|\d+)/", link)
        if match:
            return match.group(1)
    meta = body.get("record") if isinstance(body.get("record"), dict) else {}
    if body.get("status") == "finished" and meta.get("inspire_id"):
        return f"ins{meta['inspire_id']}"
    return str(meta.get("recid") or body.get("recid") or record.path)


def fetch_record(identifier: str, base_url: str = HEPDATA_SITE, version: int | None = None,
                 timeout: float = 60) -> HepdataRecord:
    """Pull a record's tables, of one version, through HEPData's public API.

    ``GET <site>/record/<id>?format=json[&version=N]`` gives the record of that version
    (the latest if none is named) with its ``version``, ``version_count`` and
    ``data_tables``. HEPData's download links in ``data_tables`` name no version (they serve
    the latest) and name the site HEPData is configured with (www.hepdata.net), so they are
    not followed as they are: each table is read from
    ``<site>/download/table/<ins<id> or recid>/<table name>/<version>/yaml``, HEPData's
    versioned download route, on the site asked for (a mirror given as ``base_url`` too).

    Raises:
        PubflowError: If the record or a table cannot be read, HEPData answers with an HTML
            page (an unknown table, a record still processing), or it serves another
            version than the one asked for.
    """
    import requests

    record = parse_record(identifier)
    version = version if version is not None else record.version
    site = base_url.rstrip("/")
    params: dict[str, str | int] = {"format": "json"}
    if version is not None:
        params["version"] = version
    url = f"{site}/record/{quote(record.path, safe='')}?{urlencode(params)}"
    with requests.Session() as session:
        session.headers["User-Agent"] = _USER_AGENT
        try:
            body = _get(session, url, timeout, "the record's JSON").json()
        except ValueError:
            raise PubflowError("HEPData did not answer with JSON", path=url) from None
        if not isinstance(body, dict):
            raise PubflowError("HEPData's answer is not a record", path=url)
        tables_meta = body.get("data_tables")
        if not isinstance(tables_meta, list):
            raise PubflowError("no data_tables in the record (is it finished and public?)",
                               path=url, key="data_tables")
        served = body.get("version")
        if isinstance(served, bool) or not isinstance(served, int):
            raise PubflowError(f"the record names no version ({served!r})", path=url,
                               key="version")
        if version is not None and served != version:
            raise PubflowError(f"version {version} was asked for, HEPData served version "
                               f"{served}", path=url, key="version")
        tables: dict[str, dict[str, Any]] = {}
        table_urls: dict[str, str] = {}
        for n, entry in enumerate(tables_meta):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise PubflowError("a table without a name", path=url, key=f"data_tables[{n}]")
            table_url = (f"{site}/download/table/{_table_owner(entry, body, record)}/"
                         f"{_table_path(name)}/{served}/yaml")
            what = f"table {name!r} of version {served} (is it in this version?)"
            try:
                content = yaml.safe_load(_get(session, table_url, timeout, what).text)
            except yaml.YAMLError as err:
                raise PubflowError(f"table {name!r} is not YAML ({one_line(err)})",
                                   path=table_url) from None
            if not isinstance(content, dict) or "dependent_variables" not in content:
                raise PubflowError(f"table {name!r} has no dependent_variables", path=table_url)
            tables[name] = content
            table_urls[name] = table_url
    meta_record = body.get("record", {}) if isinstance(body.get("record"), dict) else {}
    metadata = {k: meta_record[k] for k in ("title", "inspire_id", "hepdata_doi", "doi")
                if k in meta_record}
    if isinstance(body.get("version_count"), int):
        metadata["version_count"] = body["version_count"]
    metadata["version_asked"] = version if version is not None else "latest"
    log.info("HEPData record %s version %s: %d tables", record.path, served, len(tables))
    return HepdataRecord(url=url, version=served, tables=tables, metadata=metadata,
                         table_urls=table_urls)


# -- tolerances ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How closely quantities whose names match ``match`` must be reproduced."""

    match: str
    mode: Mode
    tolerance: float = 0.0
    floor: float = 0.0
    why: str = ""

    def describe(self) -> str:
        """``exact``, ``rel 1e-04``, ``abs 0.01``, ``0.05 sigma`` (+ floor)."""
        text = {"exact": "exact", "digest": "digest",
                "relative": f"rel {self.tolerance:g}", "absolute": f"abs {self.tolerance:g}",
                "sigma": f"{self.tolerance:g} sigma"}[self.mode]
        if self.floor and self.mode in ("relative", "sigma"):
            text += f" + {self.floor:g}"
        return text


EXACT = Rule(match="*", mode="exact", why="no rule matches: compared exactly")


@dataclass(frozen=True)
class Tolerances:
    """The ordered rules of a tolerance file."""

    rules: tuple[Rule, ...]
    source: str = ""

    def rule_for(self, name: str) -> Rule:
        """The first rule whose pattern matches ``name`` (exact if none does)."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(name, rule.match):
                return rule
        return EXACT


def load_tolerances(path: str | Path) -> Tolerances:
    """Read and validate a tolerance file (``tolerances.yaml``).

    Raises:
        PubflowError: Naming the file and key of a missing file or a malformed rule.
    """
    spec = load_yaml(path)
    rules_spec = spec.get("rules") if isinstance(spec, dict) else None
    for i, rule in enumerate(rules_spec if isinstance(rules_spec, list) else []):
        for key in ("tolerance", "floor"):  # the schema refuses them too, in its own words
            value = rule.get(key) if isinstance(rule, dict) else None
            if isinstance(value, float) and not math.isfinite(value):
                raise PubflowError(f"{value} is not a tolerance: give a finite number, at "
                                   "least 0", path=path, key=f"rules[{i}].{key}")
    validate(spec, "tolerances", path)
    rules = tuple(Rule(match=r["match"], mode=r["mode"], tolerance=float(r.get("tolerance", 0)),
                       floor=float(r.get("floor", 0)), why=r.get("why", ""))
                  for r in spec["rules"])
    return Tolerances(rules=rules, source=str(path))


# -- the comparison -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The verdict on one quantity.

    Attributes:
        name: The quantity.
        reference: Its reference value (None if the reference lacks it).
        new: Its new value (None if the new run lacks it).
        difference: new - reference, for numbers.
        allowed: The largest difference the rule allows, for numbers.
        rule: The tolerance rule applied.
        status: ``identical``, ``within`` (tolerance), ``failed``, ``missing`` (from the new
            run) or ``new`` (not in the reference).
        note: What differs, where the numbers do not say it.
        figure: The distribution the quantity belongs to (for plots).
    """

    name: str
    reference: Value | None
    new: Value | None
    difference: float | None
    allowed: float | None
    rule: Rule
    status: Status
    note: str = ""
    figure: str | None = None

    @property
    def passed(self) -> bool:
        """Identical or within tolerance."""
        return self.status in ("identical", "within")


def _vector_note(ref: tuple[float, ...], new: tuple[float, ...]) -> str:
    if len(ref) != len(new):
        return f"{len(ref)} values became {len(new)}"
    first = next(i for i, (a, b) in enumerate(zip(ref, new, strict=True)) if a != b)
    return f"first difference at index {first}: {ref[first]:g} became {new[first]:g}"


def _non_finite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+infinity" if value > 0 else "-infinity")


def judge(name: str, ref: Quantity, new: Quantity, rule: Rule) -> Result:
    """Compare one quantity present on both sides under ``rule``."""
    a, b = ref.value, new.value
    figure = ref.figure or new.figure
    if isinstance(a, float) and isinstance(b, float):
        difference = b - a
        if a == b or (math.isnan(a) and math.isnan(b)):
            return Result(name, a, b, 0.0, 0.0, rule, "identical", figure=figure)
        note = ""
        if rule.mode in ("exact", "digest"):
            allowed = 0.0
        elif rule.mode == "relative":
            allowed = rule.floor + rule.tolerance * abs(a)
        elif rule.mode == "absolute":
            allowed = rule.tolerance
        elif ref.scale is not None and math.isfinite(ref.scale):
            allowed = rule.floor + rule.tolerance * abs(ref.scale)
            note = f"sigma = {abs(ref.scale):.4g}"
        else:
            allowed = rule.floor
            note = "no sigma known for this quantity: only the floor is allowed"
        ok = math.isfinite(difference) and abs(difference) <= allowed
        if not (math.isfinite(a) and math.isfinite(b)):
            note = "; ".join(filter(None, [
                *(f"the {side} value is {_non_finite(v)}"
                  for side, v in (("reference", a), ("new", b)) if not math.isfinite(v)),
                note]))
        return Result(name, a, b, difference, allowed, rule, "within" if ok else "failed",
                      note, figure)
    if a == b:
        return Result(name, a, b, None, None, rule, "identical", figure=figure)
    if isinstance(a, tuple) and isinstance(b, tuple):
        note = _vector_note(a, b)
    elif isinstance(a, str) and isinstance(b, str):
        note = "checksum differs" if rule.mode == "digest" or len(a) == 64 else "text differs"
    else:
        note = f"{type(a).__name__} became {type(b).__name__}"
    return Result(name, a, b, None, None, rule, "failed", note, figure)


def compare(reference: Snapshot, new: Snapshot, tolerances: Tolerances) -> list[Result]:
    """Judge every quantity of either snapshot, in the reference's order, then new ones."""
    results: list[Result] = []
    for name, ref in reference.items():
        rule = tolerances.rule_for(name)
        if name not in new:
            results.append(Result(name, ref.value, None, None, None, rule, "missing",
                                  "not in the new run's outputs", ref.figure))
        else:
            results.append(judge(name, ref, new[name], rule))
    for name, quantity in new.items():
        if name not in reference:
            results.append(Result(name, None, quantity.value, None, None,
                                  tolerances.rule_for(name), "new", "not in the reference",
                                  quantity.figure))
    return results


def moved(results: Iterable[Result]) -> list[Result]:
    """The results that did not pass."""
    return [r for r in results if not r.passed]
