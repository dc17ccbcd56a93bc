"""steps.fit limit: any pyhf patchset, a patch chosen by name, the POI the patch sets."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pyhf
import pytest

from steps import fit
from steps.errors import PubflowError

from .conftest import step

# The background-only workspace has a POI of its own (as HEPData's BkgOnly.json files do);
# the patches replace it with the signal's, which the limit must be on.
BACKGROUND: dict[str, Any] = {
    "channels": [{"name": "SR", "samples": [
        {"name": "bkg", "data": [40.0, 30.0, 20.0], "modifiers": [
            {"name": "mu_B", "type": "normfactor", "data": None},
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
        ]},
    ]}],
    "observations": [{"name": "SR", "data": [42.0, 28.0, 21.0]}],
    "measurements": [{"name": "m", "config": {"poi": "mu_B", "parameters": [
        {"name": "mu_B", "fixed": True, "inits": [1.0]},  # a limit on it would be refused
    ]}}],
    "version": "1.0.0",
}
# A SUSY-like grid: two labels, the signal's size and shape change along both.
GRID = {
    "C1N2_300_100": ((300, 100), [15.0, 8.0, 3.0]),
    "C1N2_300_200": ((300, 200), [3.0, 8.0, 15.0]),
    "C1N2_500_100": ((500, 100), [8.0, 4.0, 2.0]),
    "C1N2_500_200": ((500, 200), [2.0, 4.0, 8.0]),
}


def _signal_patch(background: dict[str, Any], shape: list[float]) -> list[dict[str, Any]]:
    signal = copy.deepcopy(background)
    signal["channels"][0]["samples"].append({
        "name": "signal", "data": shape,
        "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
    })
    signal["measurements"][0]["config"]["poi"] = "mu_SIG"
    return jsonpatch.make_patch(background, signal).patch


def make_patchset(background: dict[str, Any], labels: list[str],
                  patches: dict[str, tuple[tuple[float, ...], list[float]]]) -> dict[str, Any]:
    """A patchset as pyhf's schema has it, made for ``background``."""
    return {
        "metadata": {"name": "grid", "description": "test signal grid",
                     "digests": {"sha256": pyhf.utils.digest(background)},
                     "labels": labels, "references": {"hepdata": "ins0000000"}},
        "patches": [{"metadata": {"name": name, "values": list(values)},
                     "patch": _signal_patch(background, shape)}
                    for name, (values, shape) in patches.items()],
        "version": "1.0.0",
    }


def write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The two-label grid and each patch's limit as computed by ``steps.fit limit``."""
    folder = tmp_path_factory.mktemp("grid")
    workspace = write(folder / "BkgOnly.json", BACKGROUND)
    patchset = write(folder / "patchset.json",
                     make_patchset(BACKGROUND, ["m1", "m2"], GRID))
    points = {name: fit.limit(str(workspace), str(patchset), str(folder / f"{name}.json"),
                              patch=name) for name in GRID}
    return {"folder": folder, "workspace": workspace, "patchset": patchset, "points": points}


def pyhf_limits(patch_name: str) -> tuple[float, list[float]]:
    """pyhf's own CLs limits (its TOMS 748 scan) on the patched workspace."""
    patchset = pyhf.PatchSet(make_patchset(BACKGROUND, ["m1", "m2"], GRID))
    ws = patchset.apply(copy.deepcopy(BACKGROUND), patch_name)
    model = ws.model()
    observed, expected = pyhf.infer.intervals.upper_limits.upper_limit(
        ws.data(model), model, scan=None, level=0.05)
    return float(observed), [float(x) for x in expected]


@pytest.mark.parametrize("name", list(GRID))
def test_patch_by_name_gives_pyhf_limit_of_that_patch(grid: dict[str, Any], name: str) -> None:
    """Each named patch's limits are pyhf's own on ``patchset.apply(ws, name)``."""
    point = grid["points"][name]
    observed, expected = pyhf_limits(name)
    # pyhf's scan stops at rtol 1e-4; ours at 1e-6
    assert point["observed"] == pytest.approx(observed, rel=1e-3)
    assert point["expected"] == pytest.approx(expected, rel=1e-3)
    assert json.loads((grid["folder"] / f"{name}.json").read_text()) == point


def test_grid_patches_have_distinct_limits(grid: dict[str, Any]) -> None:
    """So that picking a wrong patch could not pass the test above by coincidence."""
    observed = sorted(point["observed"] for point in grid["points"].values())
    assert all(high / low > 1.1 for low, high in itertools.pairwise(observed))


def test_limit_is_on_the_poi_the_patch_sets(grid: dict[str, Any]) -> None:
    """CLs of ``mu_SIG`` (not the background-only workspace's ``mu_B``) is 0.05 at the limit."""
    point = grid["points"]["C1N2_300_100"]
    assert point["poi"] == "mu_SIG"
    patch = _signal_patch(BACKGROUND, GRID["C1N2_300_100"][1])
    ws = pyhf.Workspace(jsonpatch.apply_patch(BACKGROUND, patch))
    model = ws.model()
    assert model.config.poi_name == "mu_SIG"
    cls_obs = pyhf.infer.hypotest(point["observed"], ws.data(model), model,
                                           test_stat="qtilde")
    assert float(cls_obs) == pytest.approx(0.05, abs=1e-4)
    # and the median expected CLs at the median expected limit
    _, cls_at_median = pyhf.infer.hypotest(point["expected"][2], ws.data(model), model,
                                           test_stat="qtilde", return_expected_set=True)
    assert float(cls_at_median[2]) == pytest.approx(0.05, abs=1e-4)


def test_values_carry_both_labels(grid: dict[str, Any]) -> None:
    point = grid["points"]["C1N2_500_200"]
    assert point["patch"] == "C1N2_500_200"
    assert point["values"] == {"m1": 500, "m2": 200}
    assert set(point) >= {"observed", "expected", "significance", "p0", "muhat", "n_fits"}
    assert len(point["expected"]) == 5


def test_mass_on_two_label_patchset_is_refused_in_one_line(grid: dict[str, Any],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    with pytest.raises(PubflowError) as err:
        fit.limit(str(grid["workspace"]), str(grid["patchset"]), str(out), mass=300)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{grid['patchset']}: metadata.labels: ")
    assert "m1, m2" in message and "--patch" in message
    assert not out.exists()


def test_unknown_patch_name_lists_names_and_writes_nothing(grid: dict[str, Any],
                                                           tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    with pytest.raises(PubflowError) as err:
        fit.limit(str(grid["workspace"]), str(grid["patchset"]), str(out), patch="C1N2_400_100")
    message = str(err.value)
    assert "\n" not in message and "'C1N2_400_100'" in message
    assert "C1N2_300_100" in message and str(grid["patchset"]) in message
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_pyhf_table_keys_are_not_patch_names(grid: dict[str, Any], tmp_path: Path) -> None:
    """pyhf's lookup table also holds the keys 'name' and 'values'; neither is a patch."""
    for name in ("name", "values"):
        with pytest.raises(PubflowError, match="no patch named"):
            fit.limit(str(grid["workspace"]), str(grid["patchset"]), str(tmp_path / "o.json"),
                      patch=name)


def test_mass_shorthand_on_single_label_patchset(tmp_path: Path) -> None:
    """A one-label patchset's patch can be chosen by its value (``--mass``)."""
    shapes = {"mass_70": ((70,), [9.0, 3.0, 0.3]), "mass_90": ((90,), [0.3, 3.0, 9.0])}
    spec = make_patchset(BACKGROUND, ["mass"], shapes)
    workspace = write(tmp_path / "ws.json", BACKGROUND)
    patchset = write(tmp_path / "ps.json", spec)
    point = fit.limit(str(workspace), str(patchset), str(tmp_path / "o.json"), mass=90)
    assert (point["patch"], point["values"]) == ("mass_90", {"mass": 90})
    ws = pyhf.PatchSet(spec).apply(copy.deepcopy(BACKGROUND), [90])
    model = ws.model()
    observed, _ = pyhf.infer.intervals.upper_limits.upper_limit(ws.data(model), model,
                                                                scan=None)
    assert point["observed"] == pytest.approx(float(observed), rel=1e-3)
    with pytest.raises(PubflowError, match=r"ps.json: patches: no patch with mass = 80"):
        fit.limit(str(workspace), str(patchset), str(tmp_path / "p.json"), mass=80)
    assert not (tmp_path / "p.json").exists()


def test_patchset_for_another_workspace_is_refused(grid: dict[str, Any],
                                                   tmp_path: Path) -> None:
    other = copy.deepcopy(BACKGROUND)
    other["observations"][0]["data"][0] += 1
    workspace = write(tmp_path / "other.json", other)
    with pytest.raises(PubflowError) as err:
        fit.limit(str(workspace), str(grid["patchset"]), str(tmp_path / "o.json"),
                  patch="C1N2_300_100")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{grid['patchset']}: metadata.digests: ")
    assert str(workspace) in message and pyhf.utils.digest(other) in message
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("which", ["workspace", "patchset"])
def test_unreadable_json_is_one_line_naming_the_file(grid: dict[str, Any], tmp_path: Path,
                                                     which: str) -> None:
    paths = {"workspace": str(grid["workspace"]), "patchset": str(grid["patchset"])}
    bad = tmp_path / f"{which}.json"
    bad.write_text('{"version": "1.0.0",')
    paths[which] = str(bad)
    with pytest.raises(PubflowError, match=rf"^{bad}: not valid JSON \(line 1") as err:
        fit.limit(paths["workspace"], paths["patchset"], str(tmp_path / "o.json"),
                  patch="C1N2_300_100")
    assert "\n" not in str(err.value)


def test_not_a_patchset_is_one_line(grid: dict[str, Any], tmp_path: Path) -> None:
    patchset = write(tmp_path / "ps.json", {"patches": []})
    with pytest.raises(PubflowError, match=rf"^{patchset}: not a pyhf patchset \("):
        fit.limit(str(grid["workspace"]), str(patchset), str(tmp_path / "o.json"), patch="x")


def test_patch_leaving_no_poi_is_refused(tmp_path: Path) -> None:
    spec = make_patchset(BACKGROUND, ["m1", "m2"], GRID)
    no_poi = copy.deepcopy(BACKGROUND)
    del no_poi["measurements"][0]["config"]["poi"]
    spec["patches"][1]["patch"] = jsonpatch.make_patch(BACKGROUND, no_poi).patch
    workspace = write(tmp_path / "ws.json", BACKGROUND)
    patchset = write(tmp_path / "ps.json", spec)
    with pytest.raises(PubflowError) as err:
        fit.limit(str(workspace), str(patchset), str(tmp_path / "o.json"), patch="C1N2_300_200")
    assert str(err.value) == (f"{patchset}: patches[1]: patch 'C1N2_300_200' leaves the "
                              "workspace without a POI (measurements[0].config.poi)")
    assert not (tmp_path / "o.json").exists()


def test_cli_limit_by_patch_name_with_log_after_subcommand(grid: dict[str, Any],
                                                          tmp_path: Path) -> None:
    log = tmp_path / "logs" / "limit_C1N2_300_100.log"
    out = tmp_path / "C1N2_300_100.json"
    result = step(tmp_path, "fit", "limit", "--workspace", str(grid["workspace"]),
                  "--patchset", str(grid["patchset"]), "--patch", "C1N2_300_100",
                  "--output", str(out), "--log", str(log))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == grid["points"]["C1N2_300_100"]
    assert "C1N2_300_100 (m1 = 300, m2 = 100)" in log.read_text()


def test_cli_unknown_patch_exits_1_with_one_line(grid: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "limit.log"
    result = step(tmp_path, "fit", "limit", "--workspace", str(grid["workspace"]),
                  "--patchset", str(grid["patchset"]), "--patch", "nope",
                  "--output", "o.json", "--log", str(log))
    assert result.returncode == 1
    [line] = [x for x in result.stderr.splitlines() if "error:" in x]
    assert line.startswith(f"python -m steps.fit: error: {grid['patchset']}: patches: "
                           "no patch named 'nope'")
    assert line in log.read_text().splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["limit.log"]


@pytest.mark.parametrize("selectors", [[], ["--patch", "a", "--mass", "90"]])
def test_cli_needs_exactly_one_of_patch_and_mass(selectors: list[str]) -> None:
    base = ["limit", "--workspace", "w", "--patchset", "p", "--output", "o"]
    with pytest.raises(SystemExit) as exit_:
        fit.build_parser().parse_args([*base, *selectors])
    assert exit_.value.code == 2
