"""steps.contour: exclusion contours against limits that are known analytic functions of the
scan coordinates, and a figure that is the same bytes on every run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from steps.contour import draw_contours, exclusion_contours

REPO = Path(__file__).resolve().parents[1]
LABELS = ("m_stop", "m_lsp")
KEYS = ("observed", "expected", "expected_-1sigma", "expected_+1sigma")

#: Where a limit exp((x - c) / 100) crosses 1, per contour: x = c. The -1 sigma expected
#: limit is the smallest, so it excludes furthest; +-2 sigma carry no contour.
CROSSING = {"observed": 525.0, "expected": 610.0, "expected_-1sigma": 660.0,
            "expected_+1sigma": 560.0}
EXPECTED_CROSSINGS = (710.0, 660.0, 610.0, 560.0, 510.0)  # -2, -1, 0, +1, +2 sigma


def rectangle(xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
    """Every (x, y) of a full grid."""
    return [(float(x), float(y)) for x in xs for y in ys]


def triangle() -> list[tuple[float, float]]:
    """A SUSY-like grid: m_stop 200..1000 GeV, m_lsp from 0 up to m_stop - 100, in 50 GeV
    steps; its upper edge is the line m_lsp = m_stop - 100."""
    return [(float(x), float(y)) for x in range(200, 1001, 50) for y in range(0, x - 99, 50)]


def scan(grid: list[tuple[float, float]], observed: Callable[[float, float], float],
         expected: Callable[[float, float], list[float]]) -> list[dict[str, Any]]:
    """Limit points as steps.fit writes them, with the given limit functions."""
    return [{"patch": f"stop_{x:g}_lsp_{y:g}", "values": {"m_stop": x, "m_lsp": y},
             "poi": "Signal_norm", "observed": observed(x, y), "expected": expected(x, y)}
            for x, y in grid]


def in_x(x: float, y: float, crossing: float) -> float:
    """A limit that grows by e every 100 GeV of x and is 1 at x = crossing."""
    return math.exp((x - crossing) / 100)


def log_linear_in_x(grid: list[tuple[float, float]]) -> list[dict[str, Any]]:
    return scan(grid, lambda x, y: in_x(x, y, CROSSING["observed"]),
                lambda x, y: [in_x(x, y, c) for c in EXPECTED_CROSSINGS])


GRIDS = {
    # y in 40 GeV steps against x in 50: the axes' spans differ (400 and 500 GeV)
    "rectangle": (rectangle(np.arange(300, 801, 50), np.arange(0, 401, 40)),
                  lambda c: (0.0, 400.0)),
    # the contour x = c runs from m_lsp = 0 up to the upper edge, m_lsp = c - 100
    "triangle": (triangle(), lambda c: (0.0, c - 100.0)),
}


@pytest.mark.parametrize("grid", GRIDS)
def test_log_linear_limits_give_exact_contours(grid: str) -> None:
    """Linear interpolation of log(limit) reproduces a log-linear limit exactly, on any
    triangulation: each contour is the line x = c, across the whole scan."""
    points, y_range = GRIDS[grid]
    contours = exclusion_contours(log_linear_in_x(points), LABELS)
    assert set(contours) == set(KEYS)
    for key, c in CROSSING.items():
        (line,) = contours[key]
        assert line.ndim == 2 and line.shape[1] == 2 and len(line) >= 2
        assert np.abs(line[:, 0] - c).max() < 1e-9, key
        assert (line[:, 1].min(), line[:, 1].max()) == pytest.approx(y_range(c), abs=1e-9)


def test_level_other_than_one() -> None:
    """A limit exp((x - 525) / 100) equals 2 at x = 525 + 100 ln 2."""
    points = log_linear_in_x(triangle())
    (line,) = exclusion_contours(points, LABELS, level=2.0)["observed"]
    assert np.abs(line[:, 0] - (525 + 100 * math.log(2))).max() < 1e-9


def test_contour_in_both_coordinates() -> None:
    """log(limit) = (x - 500)/100 + (y - 200)/200 is 0 on the line x + y/2 = 600, from
    (600, 0) to (400, 400): exact again, so the unit scaling of the axes is undone right."""
    def limit(x: float, y: float, shift: float = 0.0) -> float:
        return math.exp((x - 500 - shift) / 100 + (y - 200) / 200)

    points = scan(rectangle(np.arange(300, 801, 50), np.arange(0, 401, 40)), limit,
                  lambda x, y: [limit(x, y, s) for s in (100, 50, 0, -50, -100)])
    contours = exclusion_contours(points, LABELS)
    (line,) = contours["observed"]
    assert np.abs(line[:, 0] + line[:, 1] / 2 - 600).max() < 1e-9
    ends = sorted(map(tuple, line[[0, -1]].round(9)))
    assert ends == [(400.0, 400.0), (600.0, 0.0)]
    (expected,) = contours["expected"]  # the median shift is 0 too: the same line
    assert np.abs(expected[:, 0] + expected[:, 1] / 2 - 600).max() < 1e-9
    (minus,) = contours["expected_-1sigma"]  # shifted by +50 GeV in x
    assert np.abs(minus[:, 0] + minus[:, 1] / 2 - 650).max() < 1e-9


def test_triangulation_is_delaunay_in_unit_scaled_coordinates() -> None:
    """A=(0, 50), B=(300, 0), C=(1000, 50), D=(700, 100) GeV. Scaled to the unit square the
    angles at B and D are 85.4 degrees each (sum < 180): Delaunay joins A-C. In GeV they are
    166 degrees each, and it would join B-D. With log(limit) +1 at A and C and -1 at B and
    D, the contour then crosses the edges at their midpoints: AB-BC and AD-DC with A-C
    (in GeV it would be AB-AD and BC-DC)."""
    corners = {"A": (0.0, 50.0), "B": (300.0, 0.0), "C": (1000.0, 50.0), "D": (700.0, 100.0)}
    z = {"A": 1.0, "B": -1.0, "C": 1.0, "D": -1.0}
    points = [{"patch": name, "values": {"m_stop": x, "m_lsp": y},
               "observed": math.exp(z[name]), "expected": [math.exp(z[name])] * 5}
              for name, (x, y) in corners.items()]
    lines = exclusion_contours(points, LABELS)["observed"]

    def mid(a: str, b: str) -> tuple[float, float]:
        return ((corners[a][0] + corners[b][0]) / 2, (corners[a][1] + corners[b][1]) / 2)

    found = sorted(sorted(map(tuple, line.round(9))) for line in lines)
    assert found == sorted([sorted([mid("A", "B"), mid("B", "C")]),
                            sorted([mid("A", "D"), mid("D", "C")])])


#: A circle: centre and radius (GeV) and the scale of the exponential
CENTRE, RADIUS, SCALE = (500.0, 200.0), 150.0, 50.0
STEP = (30.0, 20.0)  # the grid spacing in x and y


def circle_error_bound(radius: float) -> float:
    """How far inside the circle the contour may lie, in GeV.

    log(limit) = (r - R)/s is r up to a linear map; r is convex, so its linear interpolant
    along a triangle edge lies above it: where the interpolant is R, r <= R. Along an edge
    of length L, linear interpolation errs by at most M L^2 / 8, M the largest second
    derivative of r along the edge: 1/r (across the radius), and a contour vertex's edge
    stays at r > R - 2L. The longest edges are the cells' diagonals.
    """
    edge = math.hypot(*STEP)
    return edge**2 / (8 * (radius - 2 * edge))


def circle_points() -> list[dict[str, Any]]:
    def limit(x: float, y: float, radius: float = RADIUS) -> float:
        return math.exp((math.hypot(x - CENTRE[0], y - CENTRE[1]) - radius) / SCALE)

    grid = rectangle(np.arange(200, 801, STEP[0]), np.arange(0, 401, STEP[1]))
    return scan(grid, limit, lambda x, y: [limit(x, y, r) for r in (190, 170, 150, 130, 110)])


def test_circular_limit_gives_a_circle() -> None:
    """A limit exp((r - R)/s), r the distance to a centre, gives one closed contour whose
    vertices lie at radius between R - bound and R, enclosing the area of such a circle."""
    contours = exclusion_contours(circle_points(), LABELS)
    for key, radius in (("observed", RADIUS), ("expected", 150.0),
                        ("expected_-1sigma", 170.0), ("expected_+1sigma", 130.0)):
        bound = circle_error_bound(radius)
        (ring,) = contours[key]
        assert np.array_equal(ring[0], ring[-1]), "closed"
        r = np.hypot(ring[:, 0] - CENTRE[0], ring[:, 1] - CENTRE[1])
        assert r.max() <= radius + 1e-9, key
        assert r.min() >= radius - bound, (key, radius - r.min(), bound)
        x, y = ring[:, 0], ring[:, 1]
        area = abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) / 2  # shoelace
        assert math.pi * (radius - bound) ** 2 <= area <= math.pi * radius**2, key


def test_no_crossing_gives_no_contour() -> None:
    """Everything excluded (limit < 1 everywhere) or nothing (> 1): empty lists, while the
    contours that do cross are still there."""
    nowhere, everywhere = -1000.0, 5000.0  # crossings far outside the scan
    points = scan(triangle(), lambda x, y: in_x(x, y, everywhere),
                  lambda x, y: [in_x(x, y, c) for c in (everywhere, everywhere, 610.0,
                                                        nowhere, nowhere)])
    contours = exclusion_contours(points, LABELS)
    assert contours["observed"] == []
    assert contours["expected_-1sigma"] == [] and contours["expected_+1sigma"] == []
    (line,) = contours["expected"]
    assert np.abs(line[:, 0] - 610).max() < 1e-9


def _point(x: float, y: float, observed: float = 1.5) -> dict[str, Any]:
    return {"patch": f"p_{x:g}_{y:g}", "values": {"m_stop": x, "m_lsp": y},
            "observed": observed, "expected": [0.5, 0.7, 1.0, 1.4, 2.0]}


@pytest.mark.parametrize(("points", "message"), [
    ([], "at least 3"),
    ([_point(400, 0), _point(500, 100)], "at least 3"),
    ([_point(400, 0), _point(500, 100), _point(600, 200)], "collinear"),
    ([_point(400, 0), _point(400, 100), _point(400, 200), _point(400, 300)], "collinear"),
    ([_point(400, 0), _point(500, 100), _point(500, 100), _point(600, 0)], "same"),
    ([_point(400, 0), _point(500, 100), _point(600, 0, observed=0.0)], "positive"),
    ([_point(400, 0), _point(500, 100), _point(600, 0, observed=math.nan)], "positive"),
])
def test_points_that_cannot_be_contoured(points: list[dict[str, Any]], message: str
                                         ) -> None:
    with pytest.raises(ValueError, match=message):
        exclusion_contours(points, LABELS)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

DRAW = """
import json, sys
from pathlib import Path
from steps.contour import draw_contours
draw_contours(json.loads(Path(sys.argv[1]).read_text()), ("m_stop", "m_lsp"),
              {"m_stop": "GeV", "m_lsp": "GeV"}, "Signal_norm", Path(sys.argv[2]),
              rlabel="2.3 fb$^{-1}$ (7 TeV)")
"""


def test_figure_is_written_and_reproducible(tmp_path: Path) -> None:
    """PNG and PDF, with no timestamps: a second run, in another process with another hash
    seed, writes the same bytes."""
    points = log_linear_in_x(triangle())
    first = tmp_path / "a" / "contour.png"
    first.parent.mkdir()
    draw_contours(points, LABELS, {"m_stop": "GeV", "m_lsp": "GeV"}, "Signal_norm", first,
                  rlabel="2.3 fb$^{-1}$ (7 TeV)")
    png, pdf = first.read_bytes(), first.with_suffix(".pdf").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 20_000
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert b"CreationDate" not in pdf and b"Software" not in png

    second = tmp_path / "b" / "contour.png"
    second.parent.mkdir()
    (tmp_path / "points.json").write_text(json.dumps(points))
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", DRAW, str(tmp_path / "points.json"), str(second)],
                   cwd=REPO, env=env, check=True)
    assert second.read_bytes() == png
    assert second.with_suffix(".pdf").read_bytes() == pdf


def test_figure_without_contours(tmp_path: Path) -> None:
    """A scan that excludes nothing still gives a figure (the colour map and the points)."""
    points = scan(triangle(), lambda x, y: in_x(x, y, 0.0),
                  lambda x, y: [in_x(x, y, 0.0)] * 5)
    png = tmp_path / "contour.png"
    draw_contours(points, LABELS, {}, "mu", png)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF-")
