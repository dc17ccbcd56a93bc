"""The shared command line: a rule's log file and the job's own stderr both get the messages."""

from __future__ import annotations

from pathlib import Path

from .conftest import step


def test_log_file_and_stderr_both_hold_the_one_line_error(tmp_path: Path) -> None:
    """On REANA, ``reana-client logs`` shows stderr; Snakemake keeps ``log:``. Both see it."""
    log = tmp_path / "logs" / "model" / "model.log"  # its directory does not exist yet
    missing = tmp_path / "missing.yaml"
    result = step(tmp_path, "model", "--config", str(missing), "--workspace", "w.json",
                  "--patchset", "p.json", "--log", str(log))
    assert result.returncode == 1
    [line] = [x for x in result.stderr.splitlines() if "error:" in x]
    assert line.startswith("python -m steps.model: error: ") and str(missing) in line
    assert line in log.read_text().splitlines()
    assert not (tmp_path / "w.json").exists()


def test_without_log_nothing_is_written(tmp_path: Path) -> None:
    """``--log`` is optional: a step run by hand writes no log file anywhere."""
    result = step(tmp_path, "model", "--config", "missing.yaml", "--workspace", "w.json",
                  "--patchset", "p.json")
    assert result.returncode == 1 and "error:" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_subcommands_take_the_shared_options_after_their_name(tmp_path: Path) -> None:
    """``steps.fit limit ... --log F`` (as the rules call it) logs the one-line error."""
    log = tmp_path / "limit.log"
    result = step(tmp_path, "fit", "limit", "--workspace", "missing.json", "--patchset",
                  "p.json", "--mass", "90", "--output", "o.json", "--log", str(log))
    assert result.returncode == 1, result.stderr
    assert "python -m steps.fit: error: p.json: file not found" in log.read_text()


def test_shared_options_given_before_a_subcommand_are_kept() -> None:
    """``-v`` before the subcommand is not reset by the subcommand's own copy of it."""
    from steps.fit import build_parser

    base = ["--workspace", "w", "--patchset", "p", "--mass", "90", "--output", "o"]
    assert build_parser().parse_args(["-v", "limit", *base]).verbose is True
    assert build_parser().parse_args(["limit", *base, "-v"]).verbose is True
    assert build_parser().parse_args(["limit", *base]).verbose is False
    assert build_parser().parse_args(["--log", "a.log", "limit", *base]).log == Path("a.log")
