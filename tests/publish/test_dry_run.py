"""Dry runs: complete, schema-valid bundles and plans, nothing sent; the plan is what is sent."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from steps.config import validate
from steps.publish.bundle import digests

from .conftest import ENV, REPO, SECRETS, net, write_report

TARGETS = ("hepdata", "zenodo", "cap")


def check_bundle(bundle: Path, target: str) -> dict:
    """Every document valid, every file in the manifest with the right digests."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    on_disk = sorted(p.name for p in (bundle / "files").iterdir())
    assert on_disk == [f["name"] for f in manifest["files"]]
    for entry in manifest["files"]:
        size, md5, sha = digests(bundle / "files" / entry["name"])
        assert (size, md5, sha) == (entry["size"], entry["md5"], entry["sha256"])
    plan = json.loads((bundle / "plan.json").read_text())
    validate(plan, "publish-plan", bundle / "plan.json")
    assert plan["target"] == target and plan["mode"] == "dry-run"
    if target == "zenodo":
        validate(json.loads((bundle / "metadata.json").read_text())["metadata"],
                 "zenodo-metadata", "metadata.json")
    if target == "cap":
        validate(json.loads((bundle / "metadata.json").read_text()), "cap-metadata",
                 "metadata.json")
    text = "".join(p.read_text(errors="replace") for p in bundle.rglob("*.json"))
    assert not any(s in text for s in SECRETS)
    return plan


@pytest.mark.parametrize("target", TARGETS)
def test_dry_run_writes_a_complete_bundle_and_sends_nothing(target, repo, publish):
    # credentials present on purpose: a dry run must neither use nor record them
    run = publish(target, env=ENV)
    assert run.rc == 0, run.out
    out = repo / "results" / "publish" / target
    plan = check_bundle(out / "bundle", target)
    assert not (out / "state.json").exists()
    assert "nothing was sent" in run.log
    assert plan["endpoint"] == {"hepdata": "https://www.hepdata.net",
                                "zenodo": "https://sandbox.zenodo.org",
                                "cap": "https://analysispreservation-qa.cern.ch"}[target]
    assert plan["production"] is False and plan["publish"] is False


@pytest.mark.parametrize("target", TARGETS)
def test_dry_run_on_the_real_results(target, tmp_path, publish, monkeypatch, workflow_run):
    """The bundled run's results (the suite's full workflow run), into a temporary --out."""
    monkeypatch.chdir(workflow_run)
    run = publish(target, "--out", str(tmp_path / target))
    assert run.rc == 0, run.out
    plan = check_bundle(tmp_path / target / "bundle", target)
    names = [f["name"] for f in json.loads(
        (tmp_path / target / "bundle" / "manifest.json").read_text())["files"]]
    if target == "zenodo":
        assert {"pubflow-workflow.tar.gz", "hepdata-submission.tar.gz", "model-workspace.json",
                "model-patchset.json", "fit-results.json", "fit-limits.json",
                "figure-brazil.png", "validation-report.json"} <= set(names)
        assert (workflow_run / "results/provenance/ro-crate-metadata.json").is_file() == (
            "ro-crate-metadata.json" in names)
        assert plan["requests"][1]["step"] == "create"
    if target == "cap":
        assert names == ["pubflow-workflow.tar.gz", "reana.yaml"]


def test_the_plan_is_what_is_sent(repo, zenodo, cap, publish):
    """Fresh Zenodo and CAP flows: the requests sent are the planned ones, in order."""
    for target, service in (("zenodo", zenodo), ("cap", cap)):
        args = (target, "--publish", "--base-url", service.url, *net())
        assert publish(*args, env=ENV).rc == 0
        plan = json.loads((repo / f"results/publish/{target}/bundle/plan.json").read_text())
        assert publish(*args, "--upload", env=ENV).rc == 0
        assert len(service.log) == len(plan["requests"])
        for (method, path), step in zip(service.log, plan["requests"], strict=True):
            parts = re.split(r"\{[^}]+\}", step["url"].split("?")[0])  # {placeholders}
            pattern = ".+".join(re.escape(part) for part in parts)
            assert method == step["method"], (method, path, step)
            assert re.fullmatch(pattern, service.url + path.split("?")[0]), (path, step["url"])


def test_plan_after_publication_shows_a_new_version(repo, zenodo, publish):
    args = ("zenodo", "--publish", "--base-url", zenodo.url, *net())
    assert publish(*args, "--upload", env=ENV).rc == 0
    assert publish(*args).rc == 0
    plan = json.loads((repo / "results/publish/zenodo/bundle/plan.json").read_text())
    assert plan["requests"] == [] and "already holds exactly these files" in plan["notes"][0]
    (repo / "results/fit/results.json").write_text('{"mu": 2}')
    write_report(repo)  # the workflow validates what it made
    assert publish(*args).rc == 0
    plan = json.loads((repo / "results/publish/zenodo/bundle/plan.json").read_text())
    steps = [s["step"] for s in plan["requests"]]
    # an existing draft of the concept record is looked for before a new version is asked for
    assert steps[:2] == ["find-version-draft", "new-version"] and "create" not in steps
    assert [s["url"].rsplit("/", 1)[-1] for s in plan["requests"] if s["step"] == "upload"] == [
        "fit-results.json", "validation-report.json"]  # the report vouches for the new one


def test_refuses_to_publish_zenodo_for_real_without_the_hepdata_link(repo, publish):
    run = publish("zenodo", "--production", "--publish")
    assert run.rc == 1 and "HEPData" in run.out


def test_cap_metadata_is_checked_before_any_request(repo, cap, publish, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("basic_info:\n  people_info: []\n")
    run = publish("cap", "--upload", "--base-url", cap.url, "--metadata", str(extra), *net(),
                  env=ENV)
    assert run.rc == 1 and "basic_info.people_info" in run.out
    assert not cap.log


@pytest.mark.parametrize("target", TARGETS)
def test_help(target, capsys):
    from steps.publish.__main__ import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([target, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--dry-run", "--upload", "--production", "--base-url", "--retries"):
        assert option in text
    assert ("--publish" in text) == (target != "hepdata")


def test_main_help_lists_targets_and_credentials():
    result = subprocess.run([sys.executable, "-m", "steps.publish", "--help"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    for word in ("hepdata", "zenodo", "cap", "ZENODO_TOKEN", "secrets-add"):
        assert word in result.stdout


def test_publish_is_not_part_of_the_default_run():
    """``snakemake publish`` makes the three bundles; the default target makes none."""
    snakemake = Path(sys.executable).parent / "snakemake"
    if not snakemake.exists() or not shutil.which("bash"):
        pytest.skip("snakemake is not installed here")

    def jobs(*targets: str) -> set[str]:
        result = subprocess.run([str(snakemake), *targets, "--dry-run", "--forceall",
                                 "--nolock"], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return set(re.findall(r"^(\w+)\s+\d+$", result.stdout + result.stderr, re.M))

    assert {"publish_hepdata", "publish_zenodo", "publish_cap", "publish"} <= jobs("publish")
    assert not {j for j in jobs() if j.startswith("publish")}
