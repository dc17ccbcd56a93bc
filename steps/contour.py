"""contour: 95% CL exclusion contours of a two-dimensional signal-hypothesis scan.

The points of a scan (e.g. a SUSY grid in (m_stop, m_lsp), often only the triangle
m_lsp < m_stop) carry the observed and expected CLs upper limits on the POI that
``steps.fit limit`` writes. A hypothesis is excluded where the limit is below 1: the
exclusion contour is where the limit crosses 1, found by linear interpolation of
log(limit) over a Delaunay triangulation of the points (exclusion limits vary roughly
exponentially with the masses, so log-linear interpolation is nearly exact between points).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Which limit each contour is drawn from: (key of the point, index into it or None).
#: expected = [-2 sigma, -1 sigma, median, +1 sigma, +2 sigma].
CONTOURS: dict[str, tuple[str, int | None]] = {
    "observed": ("observed", None),
    "expected": ("expected", 2),
    "expected_-1sigma": ("expected", 1),
    "expected_+1sigma": ("expected", 3),
}


def _coordinates(points: Sequence[dict[str, Any]], labels: tuple[str, str]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points' (x, y) in the labels' units, with the offset and span that map each
    axis onto [0, 1]; ValueError if the points cannot be triangulated."""
    xy = np.array([[float(p["values"][labels[0]]), float(p["values"][labels[1]])]
                   for p in points], dtype=float).reshape(-1, 2)
    if len(xy) < 3:
        raise ValueError(f"a contour needs at least 3 scan points in ({labels[0]}, "
                         f"{labels[1]}), got {len(xy)}")
    if not np.isfinite(xy).all():
        raise ValueError(f"scan points with non-finite {labels[0]} or {labels[1]}")
    if len(np.unique(xy, axis=0)) < len(xy):
        # qhull would silently drop all but one of them, and their limits with them
        raise ValueError(f"several scan points share the same ({labels[0]}, {labels[1]})")
    low, span = xy.min(axis=0), np.ptp(xy, axis=0)
    # A zero span means all points on a line parallel to an axis; the rank test catches
    # lines at any other angle once both axes are scaled to the unit range.
    if (span == 0).any() or np.linalg.matrix_rank((xy - low) / np.where(span, span, 1)) < 2:
        raise ValueError(f"the scan points are collinear in ({labels[0]}, {labels[1]}): "
                         "a contour needs a two-dimensional scan")
    return xy, low, span


def _triangles(points: Sequence[dict[str, Any]], labels: tuple[str, str]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The points' (x, y), the offset and span of each axis, and the Delaunay triangles
    (vertex indices) that join the points."""
    import matplotlib.tri as mtri

    xy, low, span = _coordinates(points, labels)
    # Delaunay in unit-scaled coordinates: in GeV, an axis spanning 1000 against one
    # spanning 200 would give long thin triangles across the short axis.
    unit = (xy - low) / span
    return xy, low, span, mtri.Triangulation(unit[:, 0], unit[:, 1]).triangles


def _limits(points: Sequence[dict[str, Any]], key: str, index: int | None) -> np.ndarray:
    """The points' upper limits of one kind; ValueError if one has no logarithm."""
    values = np.array([float(p[key] if index is None else p[key][index]) for p in points])
    bad = [p.get("patch", i) for i, (p, v) in enumerate(zip(points, values, strict=True))
           if not (np.isfinite(v) and v > 0)]
    if bad:
        name = key if index is None else f"{key}[{index}]"
        raise ValueError(f"{name} limits must be finite and positive, not at {bad}")
    return values


def _segments(path: Any) -> list[np.ndarray]:
    """The polylines of a matplotlib Path, split at its MOVETOs, closed ones closed.

    Path.to_polygons would do this but simplifies (drops vertices of) long paths.
    """
    from matplotlib.path import Path as MplPath

    if len(path.vertices) == 0:
        return []
    if path.codes is None:
        return [np.array(path.vertices, dtype=float)]
    starts = np.flatnonzero(path.codes == MplPath.MOVETO)[1:]
    out = []
    for verts, codes in zip(np.split(path.vertices, starts), np.split(path.codes, starts),
                            strict=True):
        segment = np.array(verts, dtype=float)
        segment[codes == MplPath.CLOSEPOLY] = segment[0]
        out.append(segment)
    return out


def exclusion_contours(points: Sequence[dict[str, Any]], labels: tuple[str, str],
                       level: float = 1.0) -> dict[str, list[np.ndarray]]:
    """Where the observed, expected and expected +-1 sigma upper limits cross ``level``.

    Returns, per key of ``CONTOURS``, a list of (N, 2) arrays of (x, y) in the labels'
    units, one per connected line (closed ones end on their first vertex); an empty list
    where the limit does not cross ``level`` inside the convex hull of the points.
    """
    from matplotlib.figure import Figure

    if not (np.isfinite(level) and level > 0):
        raise ValueError(f"the contour level must be finite and positive, not {level}")
    xy, low, span, triangles = _triangles(points, labels)
    unit = (xy - low) / span
    # A figure that is never drawn nor registered with pyplot: matplotlib's public
    # tricontour runs the contour generator (the C++ one behind TriContourGenerator, which
    # is private) and returns the lines as paths, one per level.
    ax = Figure().add_subplot()
    out: dict[str, list[np.ndarray]] = {}
    for name, (key, index) in CONTOURS.items():
        z = np.log(_limits(points, key, index))
        if not (z.min() < np.log(level) < z.max()):
            out[name] = []  # the level lies outside the values: nothing to cross
            continue
        paths = ax.tricontour(unit[:, 0], unit[:, 1], triangles, z,
                              levels=[np.log(level)]).get_paths()
        out[name] = [seg * span + low for path in paths for seg in _segments(path)]
    return out


def draw_contours(points: Sequence[dict[str, Any]], labels: tuple[str, str],
                  units: dict[str, str], poi: str, png: Path, rlabel: str | None = None,
                  titles: dict[str, str] | None = None) -> None:
    """The exclusion-contour figure: observed upper limits as a colour map (log scale) over
    the scan points, observed (solid), expected (dashed) and expected +-1 sigma (dotted)
    contours where the limit is 1. Writes ``png`` and the PDF beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.tri as mtri
    import mplhep
    from matplotlib.colors import LogNorm

    from steps.fit import _save_figure, axis_label

    xy, _, _, triangles = _triangles(points, labels)
    observed = _limits(points, "observed", None)
    contours = exclusion_contours(points, labels)
    styles = {
        "observed": {"color": "black", "linestyle": "-", "linewidth": 3, "label": "Observed"},
        "expected": {"color": "red", "linestyle": "--", "linewidth": 3, "label": "Expected"},
        "expected_-1sigma": {"color": "red", "linestyle": ":", "linewidth": 2,
                             "label": r"Expected $\pm 1\sigma$"},
        "expected_+1sigma": {"color": "red", "linestyle": ":", "linewidth": 2},
    }
    with plt.style.context(mplhep.style.CMS):
        fig, ax = plt.subplots(figsize=(11, 8))
        # The same triangles as the contours, so colours and lines interpolate alike;
        # Gouraud shading blends the vertices' log-normed colours across each triangle.
        mesh = ax.tripcolor(mtri.Triangulation(xy[:, 0], xy[:, 1], triangles), observed,
                            shading="gouraud", cmap="viridis",
                            norm=LogNorm(observed.min(), observed.max()))
        fig.colorbar(mesh, ax=ax, label=f"95% CL upper limit on {poi}")
        for name, style in styles.items():
            for i, segment in enumerate(contours[name]):
                # one legend entry per kind, however many pieces its contour has
                ax.plot(segment[:, 0], segment[:, 1],
                        **(style if i == 0 else {k: v for k, v in style.items()
                                                 if k != "label"}))
        ax.plot(xy[:, 0], xy[:, 1], "o", color="white", markeredgecolor="black",
                markersize=3, linestyle="none", label="Scan points")
        ax.set_xlabel(axis_label(labels[0], units, titles))
        ax.set_ylabel(axis_label(labels[1], units, titles))
        low, high = xy.min(axis=0), xy.max(axis=0)
        pad = 0.03 * (high - low)  # so the points on the hull's edge are not cut in half
        ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
        # headroom above the points for the legend, as exclusion plots leave it
        ax.set_ylim(low[1] - pad[1], high[1] + 0.4 * (high[1] - low[1]))
        ax.legend(loc="upper left", ncol=2, fontsize="small")
        if rlabel:
            ax.set_title(rlabel, loc="right", fontsize="medium")
        fig.tight_layout()
        _save_figure(fig, png)
