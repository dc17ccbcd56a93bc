"""The dataset manifest: written by `steps.datasets add`, verified with every checksum it has."""

from __future__ import annotations

import hashlib
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uproot
import yaml

from steps import cli, datasets
from steps.config import load_datasets, schema, validate
from steps.errors import PubflowError
from steps.validate import check_datasets

from .conftest import REPO, step

BUNDLED = REPO / "inputs" / "datasets.yaml"
BUNDLED_DATA = "inputs/data/uproot-Zmumu.root"

#: Entries written per tree, and so expected back: nominal and two variations, one in a folder.
TREES = {"nominal": 50, "JES_up": 30, "syst/JER_down": 20}


def adler32_by_definition(data: bytes) -> str:
    """adler32 from RFC 1950 itself (A = 1 + sum of bytes, B = sum of the As, mod 65521).

    Independent of zlib, which the code under test uses.
    """
    a, b = 1, 0
    for byte in data:
        a = (a + byte) % 65521
        b = (b + a) % 65521
    return f"{(b << 16) | a:08x}"


def write_ntuple(path: Path, trees: dict[str, int] = TREES, seed: int = 0) -> Path:
    """A cabinetry-style ntuple: TTrees (mktree, not RNTuples), some in a folder, one histogram."""
    rng = np.random.default_rng(seed)
    with uproot.recreate(path) as f:
        for name, n in trees.items():
            tree = f.mktree(name, {"M": "f8", "weight": "f4"})
            tree.extend({"M": rng.normal(91, 3, n), "weight": np.ones(n, "f4")})
        f["h_cutflow"] = np.histogram(rng.normal(size=10))  # not a tree: not listed
    return path


def add(*args: str | Path) -> int:
    """``python -m steps.datasets add ARGS``, in this process (fast)."""
    return cli.run(datasets.main, datasets.build_parser, ["add", *map(str, args)])


def read(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory: paths in the manifest are relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_adler32_known_values(tmp_path: Path) -> None:
    wiki = tmp_path / "wiki"
    wiki.write_bytes(b"Wikipedia")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    # Wikipedia's worked example; an empty input is the starting value 1, zero-padded to 8 digits
    assert datasets.checksums(wiki, ["adler32"]) == {"adler32": "11e60398"}
    assert datasets.checksums(wiki, ["adler32"], chunk=2) == {"adler32": "11e60398"}
    assert datasets.checksums(empty, ["adler32"]) == {"adler32": "00000001"}
    assert adler32_by_definition(b"Wikipedia") == "11e60398"


def test_add_records_size_checksums_and_every_tree(workdir: Path) -> None:
    write_ntuple(workdir / "mc.root")
    assert add("./mc.root", "--checksum", "adler32", "--manifest", "m.yaml") == 0
    assert add("mc.root", "--manifest", "m.yaml") == 0  # adds no kind unasked
    assert "sha256" not in read(workdir / "m.yaml")["files"][0]
    assert add("mc.root", "--checksum", "sha256", "--manifest", "m.yaml") == 0

    [entry] = read(workdir / "m.yaml")["files"]
    data = (workdir / "mc.root").read_bytes()
    assert entry["path"] == "mc.root"  # as given, normalised
    assert entry["size"] == os.path.getsize("mc.root") == len(data)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["adler32"] == adler32_by_definition(data) == f"{zlib.adler32(data):08x}"
    with uproot.open("mc.root") as f:
        assert entry["trees"] == {name: f[name].num_entries for name in TREES} == TREES
    assert set(entry["provenance"]) == {"source", "record", "doi", "license"}


def test_every_step_reads_a_new_entry_and_validate_refuses_it_until_filled(workdir: Path
                                                                            ) -> None:
    write_ntuple(workdir / "mc.root")
    assert add("mc.root", "--manifest", "m.yaml") == 0
    # select's door: the unfilled manifest loads and the file verifies
    assert datasets.verify_input("m.yaml", "mc.root")["trees"] == TREES

    check = check_datasets("m.yaml")
    assert not check.valid
    assert {m.split(":")[0] for m in check.messages} == {
        "files[0].description", "files[0].provenance.source", "files[0].provenance.record",
        "files[0].provenance.doi", "files[0].provenance.license"}

    manifest = read(workdir / "m.yaml")
    manifest["files"][0]["description"] = "simulated Z to mumu, nominal and two variations"
    manifest["files"][0]["provenance"] = {"source": "tests/test_datasets.py",
                                          "license": "CC0-1.0"}
    (workdir / "m.yaml").write_text(yaml.safe_dump(manifest))
    filled = check_datasets("m.yaml")
    assert filled.valid, filled.messages


def test_readding_updates_measurements_and_keeps_hand_written_fields(workdir: Path) -> None:
    write_ntuple(workdir / "a.root")
    write_ntuple(workdir / "b.root", {"events": 7})
    assert add("a.root", "b.root", "--manifest", "m.yaml", "--description", "first") == 0
    manifest = read(workdir / "m.yaml")
    provenance = {"source": "a colleague's EOS area", "record": "https://opendata.cern.ch/record/1",
                  "doi": "10.7483/OPENDATA.TEST", "license": "CC-BY-4.0"}
    manifest["files"][0]["provenance"] = provenance
    manifest["files"][0]["description"] = "hand-written"
    header = "# my own manifest\n# (kept)\n"
    (workdir / "m.yaml").write_text(header + yaml.safe_dump(manifest, sort_keys=False))

    write_ntuple(workdir / "a.root", {"nominal": 11, "dir/sub/deep": 4}, seed=1)
    assert add("a.root", "--manifest", "m.yaml", "--checksum", "adler32") == 0

    text = (workdir / "m.yaml").read_text()
    assert text.startswith(header)
    after = yaml.safe_load(text)
    a, b = after["files"]
    data = (workdir / "a.root").read_bytes()
    assert a["trees"] == {"nominal": 11, "dir/sub/deep": 4}
    assert (a["size"], a["sha256"], a["adler32"]) == (
        len(data), hashlib.sha256(data).hexdigest(), adler32_by_definition(data))
    assert a["provenance"] == provenance and a["description"] == "hand-written"
    assert b == manifest["files"][1]  # untouched
    assert add("a.root", "--manifest", "m.yaml", "--description", "second") == 0
    assert read(workdir / "m.yaml")["files"][0]["description"] == "second"


def test_a_version_1_manifest_is_upgraded(workdir: Path) -> None:
    old = {"files": [{"path": "old.root", "tree": "events", "events": 3, "size": 10,
                      "sha256": "0" * 64, "provenance": {"source": "x", "license": "MIT"}}]}
    (workdir / "m.yaml").write_text(yaml.safe_dump(old))
    write_ntuple(workdir / "new.root")
    assert add("new.root", "--manifest", "m.yaml") == 0
    manifest = load_datasets(workdir / "m.yaml")
    assert manifest["version"] == 2
    assert manifest["files"][0]["trees"] == {"events": 3}
    assert "tree" not in manifest["files"][0] and "events" not in manifest["files"][0]


def _rntuple_only(path: Path) -> None:
    with uproot.recreate(path) as f:
        f["t"] = {"x": np.arange(3)}  # uproot 5.7 writes an RNTuple here, which select cannot read


@pytest.mark.parametrize(("name", "make", "problem"), [
    ("missing.root", None, "file not found"),
    ("text.root", lambda p: p.write_text("not ROOT at all\n" * 40), "not a readable ROOT file"),
    ("cut.root", lambda p: p.write_bytes(write_ntuple(p).read_bytes()[:300]),
     "not a readable ROOT file"),
    ("rntuple.root", _rntuple_only, "no TTree"),
])
def test_bad_file_gives_one_line_and_leaves_the_manifest(workdir: Path, name: str, make: Any,
                                                         problem: str) -> None:
    write_ntuple(workdir / "good.root")
    shutil.copy(BUNDLED, workdir / "m.yaml")
    before = (workdir / "m.yaml").read_bytes()
    if make:
        make(workdir / name)
    result = step(workdir, "datasets", "add", "good.root", name, "--manifest", "m.yaml")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"python -m steps.datasets: error: {name}: {problem}")
    assert (workdir / "m.yaml").read_bytes() == before
    assert sorted(p.name for p in workdir.iterdir()) == sorted(["good.root", "m.yaml",
                                                                *([name] if make else [])])


def test_remote_file_is_refused_by_add(workdir: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    url = "root://eospublic.cern.ch//eos/opendata/cms/x.root"
    assert add(url, "--manifest", "m.yaml") == 1
    assert capsys.readouterr().err.startswith(f"python -m steps.datasets: error: {url}: remote")
    assert not (workdir / "m.yaml").exists()


def test_help_names_the_command_and_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        datasets.build_parser().parse_args(["add", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0
    assert "python -m steps.datasets add" in text and "FILE [FILE ...]" in text
    for option in ("--manifest", "--checksum {sha256,adler32}", "--description", "FILL IN"):
        assert option in text


def _entry(path: Path, kinds: list[str]) -> dict[str, Any]:
    """A manifest entry for ``path`` computed here, with the checksum ``kinds``."""
    data = path.read_bytes()
    digests = {"sha256": hashlib.sha256(data).hexdigest(), "adler32": adler32_by_definition(data)}
    return {"path": str(path), "size": len(data), **{k: digests[k] for k in kinds}}


@pytest.mark.parametrize("remote", [False, True], ids=["local", "remote"])
@pytest.mark.parametrize("kinds", [["sha256"], ["adler32"], ["sha256", "adler32"]])
def test_verify_refuses_a_changed_file(tmp_path: Path, kinds: list[str], remote: bool) -> None:
    path = write_ntuple(tmp_path / "f.root")
    entry = _entry(path, kinds)
    # file:// takes the remote code path (fsspec) without a server
    given = path.as_uri() if remote else path
    datasets.verify(entry, given, "m.yaml")  # as recorded: passes

    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # same size: only a checksum can tell
    path.write_bytes(bytes(blob))
    with pytest.raises(PubflowError, match=rf"{kinds[0]} .* differs from .* in m\.yaml"):
        datasets.verify(entry, given, "m.yaml")
    path.write_bytes(bytes(blob[:-1]))
    with pytest.raises(PubflowError, match=r"size \d+ bytes differs"):
        datasets.verify(entry, given, "m.yaml")


def test_verify_checks_every_recorded_checksum(tmp_path: Path) -> None:
    path = write_ntuple(tmp_path / "f.root")
    entry = _entry(path, ["sha256", "adler32"])
    entry["adler32"] = f"{(int(entry['adler32'], 16) + 1) % (1 << 32):08x}"  # sha256 still right
    with pytest.raises(PubflowError, match="adler32"):
        datasets.verify(entry, path, "m.yaml")


def test_bundled_manifest_verifies_the_bundled_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    entry = datasets.verify_input(BUNDLED, BUNDLED_DATA)
    assert entry is not None
    # 2304 muon-pair entries in tree `events` (scikit-hep-testdata's uproot-Zmumu.root)
    assert entry["trees"] == {"events": 2304}
    with uproot.open(BUNDLED_DATA) as f:
        assert f["events"].num_entries == 2304
    assert entry["provenance"]["doi"] == "10.7483/OPENDATA.CMS.B8MR.C4A2"
    assert entry["provenance"]["license"] == "CC0-1.0"
    assert check_datasets(BUNDLED).valid


def test_readding_the_bundled_file_changes_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled manifest is what the command writes: re-adding its file is a no-op."""
    monkeypatch.chdir(REPO)
    copy = tmp_path / "datasets.yaml"
    shutil.copy(BUNDLED, copy)
    assert add(BUNDLED_DATA, "--manifest", copy) == 0
    assert copy.read_text() == BUNDLED.read_text()


def test_checksums_are_written_as_strings(tmp_path: Path) -> None:
    # YAML 1.2 readers take a plain 00001e10 for a float: checksums are always quoted
    manifest = {"version": 2, "files": [{"path": "x.root", "size": 1, "adler32": "00001e10",
                                         "trees": {"1e5": 1},
                                         "provenance": {"source": "s", "license": "l"}}]}
    text = datasets.dump(manifest, "")
    assert 'adler32: "00001e10"' in text
    assert yaml.safe_load(text) == manifest


def _walk(node: Any, where: str = "") -> list[str]:
    """Every property of a schema, as a key path, that has no description."""
    missing = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(f"{where}.{name}")
        for key, sub in node.items():
            missing += _walk(sub, f"{where}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            missing += _walk(sub, f"{where}[{i}]")
    return missing


def test_schema_is_described_versioned_and_needs_a_checksum() -> None:
    s = schema("datasets")
    assert _walk(s) == []
    assert s["$id"].endswith("/datasets.schema.json")
    assert s["properties"]["version"]["const"] == 2
    entry = {"path": "x.root", "size": 1, "trees": {"t": 1},
             "provenance": {"source": "s", "license": "l"}}
    with pytest.raises(PubflowError, match=r"files\[0\]\.sha256: required key is missing"):
        validate({"version": 2, "files": [entry]}, "datasets", "m.yaml")
    validate({"version": 2, "files": [{**entry, "adler32": "0a0b0c0d"}]}, "datasets", "m.yaml")
    with pytest.raises(PubflowError, match=r"files\[0\]\.adler32"):
        validate({"version": 2, "files": [{**entry, "adler32": "0A0B0C0D"}]}, "datasets", "m")
    with pytest.raises(PubflowError, match=r"files\[0\]\.trees"):
        validate({"version": 2, "files": [{**entry, "sha256": "0" * 64, "trees": {}}]},
                 "datasets", "m.yaml")
