"""report: the verdict of a reproduce run, for machines (JSON) and for people (Markdown).

``report.json`` (schema ``steps/schemas/reproduce-report.schema.json``) and ``report.md``
list every compared quantity with its reference and new value, the difference, the
tolerance applied and the result; ``plots/`` overlays the reference and new distributions
(histograms, data and predictions per bin, limits against mass, HEPData columns) wherever
at least one point moved beyond its tolerance, and only there.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.compare import Result, Snapshot, moved
from steps.config import validate
from steps.io import atomic_path, write_json
from steps.provenance import RunRecord, iso, now

log = logging.getLogger(__name__)

FORMAT = "pubflow-reproduce-report/1"
PLOTS_DIR = "plots"
STATUS_TEXT = {"identical": "identical", "within": "within tolerance", "failed": "**FAILED**",
               "missing": "**MISSING**", "new": "**NEW**"}
#: The analysis chain, upstream first: what moved upstream explains what moved downstream.
STAGES = ("histograms", "model", "fit", "limits", "hepdata")
#: Path components that name one object (histogram, parameter, limit point, table column).
GROUP_DEPTH = {"histograms": 2, "model": 2, "limits": 2, "hepdata": 3}


@dataclass
class Report:
    """Everything the report says.

    Attributes:
        results: The verdict on every quantity (empty if the run failed).
        run: The run that made the outputs (None when existing outputs were compared).
        reference: ``kind`` (repository, hepdata, none), ``source`` and ``metadata``.
        tolerances: The tolerance file applied.
        outputs: The workspace whose results were compared.
        notes: Things a reader should know (a changed config, an updated reference).
        provenance: Where the run's RO-Crate is.
    """

    results: list[Result]
    run: RunRecord | None
    reference: dict[str, Any]
    tolerances: str
    outputs: str = ""
    notes: list[str] = field(default_factory=list)
    provenance: str | None = None

    @property
    def moved(self) -> list[Result]:
        """Quantities not identical nor within tolerance."""
        return moved(self.results)

    @property
    def passed(self) -> bool:
        """The run (if any) completed and nothing moved."""
        run_ok = self.run is None or self.run.status == "completed"
        return run_ok and bool(self.results) and not self.moved


def group_of(name: str) -> str:
    """The object a quantity belongs to: ``histograms/Dimuon_Data``, ``fit/parameters/lumi``.

    >>> group_of("histograms/Dimuon_Data/bin[3]")
    'histograms/Dimuon_Data'
    >>> group_of("fit/regions/Dimuon/postfit/total[2]")
    'fit/regions/Dimuon'
    """
    parts = re.sub(r"\[\d+\]$", "", name).split("/")
    depth = GROUP_DEPTH.get(parts[0], 3 if parts[0] == "fit" and len(parts) > 3 else 2)
    return "/".join(parts[:depth])


def moved_groups(results: Iterable[Result]) -> dict[str, int]:
    """Moved quantities counted per object, upstream first (the likely cause), then most."""
    counts = Counter(group_of(r.name) for r in moved(results))

    def order(item: tuple[str, int]) -> tuple[int, int, str]:
        stage = item[0].split("/")[0]
        rank = STAGES.index(stage) if stage in STAGES else len(STAGES)
        return rank, -item[1], item[0]

    return dict(sorted(counts.items(), key=order))


def verdict(report: Report) -> str:
    """One line: passed, or what moved (or why the run failed)."""
    if report.run is not None and report.run.status != "completed":
        return f"FAILED: the run did not complete ({report.run.error or 'unknown error'})"
    total = len(report.results)
    if not total:
        return "FAILED: nothing was compared"
    mismatch = table_mismatch(report)
    if mismatch:
        return f"FAILED: {mismatch}"
    bad = report.moved
    if not bad:
        identical = sum(r.status == "identical" for r in report.results)
        return (f"PASSED: all {total} quantities reproduced ({identical} identical, "
                f"{total - identical} within tolerance)")
    groups = moved_groups(report.results)
    listed = ", ".join(f"{g} ({n})" for g, n in list(groups.items())[:8])
    more = f" and {len(groups) - 8} more" if len(groups) > 8 else ""
    return f"FAILED: {len(bad)} of {total} quantities moved beyond tolerance: {listed}{more}"


#: How report.json writes a number JSON cannot hold (the schema's ``non_finite``).
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return NON_FINITE[str(value)]
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _tables(results: Iterable[Result], status: str) -> list[str]:
    """HEPData table names (as written in quantity names) of the results with ``status``."""
    return sorted({r.name.split("/")[1] for r in results
                   if r.status == status and r.name.startswith("hepdata/") and "/" in r.name})


def table_mismatch(report: Report) -> str | None:
    """Against a HEPData record none of whose tables this run would publish: say so."""
    if report.reference.get("kind") != "hepdata" or not report.results:
        return None
    if any(r.status not in ("missing", "new") for r in report.results):
        return None

    def names(tables: list[str]) -> str:
        unescaped = [t.replace("%2F", "/").replace("%25", "%") for t in tables]
        return ", ".join(f"'{t}'" for t in unescaped[:6]) + (
            f" and {len(unescaped) - 6} more" if len(unescaped) > 6 else "")

    record, ours = _tables(report.results, "missing"), _tables(report.results, "new")
    return (f"the HEPData record's tables do not match this analysis: no table of the "
            f"record ({names(record) or 'none'}) is one this run publishes "
            f"({names(ours) or 'none'}); is it the record of this analysis?")


def as_json(report: Report, plots: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The report as ``report.json`` holds it."""
    counts: Counter[str] = Counter(r.status for r in report.results)
    return {
        "format": FORMAT,
        "passed": report.passed,
        "verdict": verdict(report),
        "created": iso(now()),
        "run": report.run.as_dict() if report.run else None,
        "outputs": report.outputs,
        "reference": report.reference,
        "tolerances": report.tolerances,
        "notes": report.notes,
        "summary": {"compared": len(report.results),
                    **{s: counts.get(s, 0) for s in STATUS_TEXT}},
        "moved": [r.name for r in report.moved],
        "moved_groups": moved_groups(report.results),
        "quantities": [{
            "name": r.name,
            "reference": _json_value(r.reference),
            "new": _json_value(r.new),
            "difference": _json_value(r.difference),
            "allowed": _json_value(r.allowed),
            "tolerance": r.rule.describe(),
            "rule": r.rule.match,
            "status": r.status,
            "note": r.note,
        } for r in report.results],
        "plots": list(plots),
        "provenance": report.provenance,
    }


# -- plots --------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _series(snap: Snapshot, figure: str) -> dict[str, list[tuple[tuple[float, ...], float]]]:
    out: dict[str, list[tuple[tuple[float, ...], float]]] = {}
    for q in snap.values():
        if (q.figure == figure and q.x is not None and isinstance(q.value, float)
                and math.isfinite(q.value)):  # a NaN is in the tables, not drawable
            out.setdefault(q.series or "", []).append((q.x, q.value))
    return out


def _draw(ax: Any, points: list[tuple[tuple[float, ...], float]], **style: Any) -> None:
    points = sorted(points)
    if all(len(x) == 2 for x, _ in points):
        edges = [points[0][0][0], *(x[1] for x, _ in points)]
        values = [v for _, v in points]
        ax.stairs(values, edges, **style)
    else:
        ax.plot([x[0] for x, _ in points], [v for _, v in points], marker="o",
                markersize=3, **style)


def overlay(figure: str, reference: Snapshot, new: Snapshot, path: Path,
            moved_names: Sequence[str]) -> Path:
    """Draw the reference and new curves of one figure, with new - reference below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref_series, new_series = _series(reference, figure), _series(new, figure)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, series in enumerate(sorted(set(ref_series) | set(new_series))):
        colour = colours[i % len(colours)]
        label = f" {series}" if series else ""
        if series in ref_series:  # reference: broad and pale; new: thin and dashed on top
            _draw(top, ref_series[series], color=colour, linewidth=2.6, alpha=0.45,
                  label=f"reference{label}")
        if series in new_series:
            _draw(top, new_series[series], color=colour, linewidth=1.2, linestyle="--",
                  label=f"new{label}")
        if series in ref_series and series in new_series:
            ref_at = dict(ref_series[series])
            diff = [(x, v - ref_at[x]) for x, v in new_series[series] if x in ref_at]
            if diff:
                _draw(bottom, diff, color=colour, linewidth=1.2)
    bottom.axhline(0, color="grey", linewidth=0.8)
    bottom.set_ylabel("new - reference")
    top.set_title(f"{figure}: {len(moved_names)} moved", fontsize=10)
    top.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


def draw_plots(report: Report, reference: Snapshot, new: Snapshot, folder: Path,
               max_plots: int = 40) -> list[dict[str, str]]:
    """One overlay per figure with a moved quantity (at most ``max_plots``)."""
    by_figure: dict[str, list[str]] = {}
    for r in report.moved:
        if r.figure:
            by_figure.setdefault(r.figure, []).append(r.name)
    plots = []
    for i, (figure, names) in enumerate(by_figure.items()):
        if i >= max_plots:
            report.notes.append(f"{len(by_figure) - max_plots} more distributions differ; "
                                f"only the first {max_plots} are drawn")
            break
        path = folder / PLOTS_DIR / f"{_slug(figure)}.png"
        overlay(figure, reference, new, path, names)
        plots.append({"figure": figure, "file": f"{PLOTS_DIR}/{path.name}"})
    return plots


# -- Markdown -----------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    """A value for a table cell."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.10g}" if math.isfinite(value) else NON_FINITE[str(value)]
    if isinstance(value, tuple):
        if not value:
            return "()"
        return f"{len(value)} edges {value[0]:g} … {value[-1]:g}"
    text = str(value)
    return text[:12] + "…" if re.fullmatch(r"[0-9a-f]{64}", text) else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(r: Result) -> str:
    if r.difference is None or not math.isfinite(r.difference):
        difference = fmt(r.difference)
    else:
        difference = f"{r.difference:+.3g}"
    tolerance = r.rule.describe()
    if r.allowed is not None and r.rule.mode not in ("exact", "digest"):
        tolerance += f" (±{r.allowed:.3g})"
    cells = [f"`{r.name}`", fmt(r.reference), fmt(r.new), difference, tolerance,
             STATUS_TEXT[r.status], r.note]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


HEADER = ("| quantity | reference | new | difference | tolerance | result | note |\n"
          "|---|---|---|---|---|---|---|")


def markdown(report: Report, plots: Sequence[Mapping[str, str]]) -> str:
    """The human page: verdict, run, reference, what moved, overlays, every quantity."""
    lines = [f"# pubflow reproduce: {'PASSED' if report.passed else 'FAILED'}", "",
             verdict(report), ""]
    counts = Counter(r.status for r in report.results)
    if report.results:
        lines += ["| compared | identical | within tolerance | failed | missing | new |",
                  "|---|---|---|---|---|---|",
                  (f"| {len(report.results)} | {counts['identical']} | {counts['within']} | "
                  f"{counts['failed']} | {counts['missing']} | {counts['new']} |"), ""]
    lines += ["## The run", ""]
    if report.run:
        run = report.run
        lines += [f"- mode: {run.mode} ({run.engine})" + (
                      f", REANA workflow `{run.reana_workflow}` on {run.reana_server}"
                      if run.reana_workflow else ""),
                  f"- command: `{_cell(' '.join(run.command))}`",
                  f"- started {iso(run.started)}, ended {iso(run.ended)}"
                  + (f" ({run.duration:.0f} s)" if run.duration is not None else ""),
                  f"- status: {run.status}" + (f": {run.error}" if run.error else ""),
                  f"- workspace: `{run.workspace}`"]
    else:
        lines += [f"- existing outputs compared: `{report.outputs}`"]
    if report.provenance:
        lines += [(f"- provenance (Workflow Run RO-Crate, its root the run's workspace): "
                   f"`{report.provenance}`")]
    lines += ["", "## The reference", "", (f"- {report.reference['kind']}: "
              f"`{report.reference['source']}`")]
    meta = report.reference.get("metadata", {})
    if report.reference.get("kind") == "hepdata" and meta.get("version") is not None:
        asked = meta.get("version_asked", "latest")
        lines.append(f"- compared with version {meta['version']} of the record"
                     + (f" (of {meta['version_count']})" if meta.get("version_count") else "")
                     + (", the latest" if asked == "latest" else f", as asked ({asked})"))
    for key, value in sorted(meta.items()):
        if isinstance(value, str | int | float):
            lines.append(f"- {key}: {_cell(str(value))}")
    lines += [f"- tolerances: `{report.tolerances}`", ""]
    for note in report.notes:
        lines += [f"> {note}", ""]
    bad = report.moved
    if bad:
        lines += ["## What moved", "", HEADER, *(_row(r) for r in bad), ""]
    if plots:
        lines += ["## Overlays of the distributions that moved", ""]
        for plot in plots:
            lines += [f"### {plot['figure']}", "", f"![{plot['figure']}]({plot['file']})", ""]
    if report.results:
        lines += ["## Every compared quantity", ""]
        sections: dict[str, list[Result]] = {}
        for r in report.results:
            sections.setdefault(r.name.split("/")[0], []).append(r)
        for section, rows in sections.items():
            n_bad = sum(not r.passed for r in rows)
            lines += [(f"<details><summary>{section}: {len(rows)} quantities, {n_bad} moved"
                      "</summary>"), "", HEADER, *(_row(r) for r in rows), "", "</details>", ""]
    lines += [
        "## Reading this report", "",
        ("- *identical*: the same value, bit for bit; *within tolerance*: different, by no "
        "more than the rule allows; *FAILED*: moved beyond it; *MISSING*: in the reference, "
        "not in the new outputs; *NEW*: in the new outputs, not in the reference."),
        ("- tolerance: `exact`, `digest`, `rel r + f` (|diff| ≤ f + r·|ref|), `abs a`, "
        "`n sigma + f` (|diff| ≤ f + n·σ of the reference); the first rule of the tolerance "
        "file matching the quantity's name applies."),
        ("- A deliberate change of the analysis moves numbers on purpose: update the reference "
        "with `python -m steps.reproduce --update-reference --reason \"...\"` in the same "
        "commit as the change (see the README)."), ""]
    return "\n".join(lines)


def write(report: Report, folder: str | Path, reference: Snapshot | None = None,
          new: Snapshot | None = None, max_plots: int = 40) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and the overlays into ``folder``.

    Returns:
        The JSON report.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (folder / PLOTS_DIR).glob("*.png"):  # overlays of an earlier report
        stale.unlink()
    plots = draw_plots(report, reference or {}, new or {}, folder, max_plots)
    body = as_json(report, plots)
    validate(body, "reproduce-report", folder / "report.json")
    write_json(folder / "report.json", body)
    with atomic_path(folder / "report.md") as tmp:
        tmp.write_text(markdown(report, plots))
    log.info("report: %s (%s)", folder / "report.md", body["verdict"])
    return body
