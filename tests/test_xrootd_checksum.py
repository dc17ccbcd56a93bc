"""Remote integrity without a second read: the adler32 of a ``root://`` input, asked of
Debian's XRootD server itself (``xrootd.chksum adler32``), as CERN Open Data records it."""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterator

import fsspec
import pytest

from steps import datasets
from steps.errors import PubflowError

from .conftest import REPO
from .test_xrootd import XRootD, serving

DATA = REPO / "inputs" / "data" / "uproot-Zmumu.root"


def _publish(server: XRootD, name: str = "uproot-Zmumu.root") -> str:
    shutil.copy(DATA, server.export / name)
    os.chmod(server.export / name, 0o644)
    return server.url(name)


def _entry(url: str, **changes: object) -> dict:
    """A manifest entry with size and adler32 only, computed here from the local copy."""
    blob = DATA.read_bytes()
    return {"path": url, "size": len(blob),
            "adler32": f"{zlib.adler32(blob) & 0xFFFFFFFF:08x}", **changes}


@pytest.fixture
def no_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every attempt to open a remote file for reading (through fsspec), recorded."""
    opened: list[str] = []
    real = fsspec.core.url_to_fs

    def spy(url: str, *args: object, **kwargs: object) -> object:
        opened.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(fsspec.core, "url_to_fs", spy)
    return opened


@pytest.fixture
def checksumming() -> Iterator[XRootD]:
    with serving("xrootd.chksum adler32\n") as server:
        yield server


def test_the_server_s_adler32_verifies_a_remote_file_without_reading_it(
        checksumming: XRootD, no_reads: list[str]) -> None:
    url = _publish(checksumming)
    assert datasets.server_checksum(url, "adler32") == (
        DATA.stat().st_size, _entry(url)["adler32"])
    datasets.verify(_entry(url), url, "datasets.yaml")
    assert no_reads == []  # no byte of the file came through our reader


def test_the_server_sends_no_file_data_for_the_check(checksumming: XRootD) -> None:
    """Counted by the server itself: checking the file costs it a few hundred bytes of
    protocol; reading the file once costs at least the file."""
    url = _publish(checksumming)
    size = DATA.stat().st_size
    before = checksumming.bytes_written()
    datasets.verify(_entry(url), url, "datasets.yaml")
    check = checksumming.bytes_written() - before
    with fsspec.open(url, "rb") as f:
        assert len(f.read()) == size
    read = checksumming.bytes_written() - before - check
    assert read >= size, (check, read)
    assert check < size / 20, (check, read)


def test_a_wrong_adler32_is_named_without_reading_the_file(checksumming: XRootD,
                                                           no_reads: list[str]) -> None:
    url = _publish(checksumming)
    real = _entry(url)["adler32"]
    with pytest.raises(PubflowError, match=rf"adler32 {real}\.\.\. differs from 00000001"):
        datasets.verify(_entry(url, adler32="00000001"), url, "datasets.yaml")
    with pytest.raises(PubflowError, match=f"size {DATA.stat().st_size} bytes differs from 1 "):
        datasets.verify(_entry(url, size=1), url, "datasets.yaml")
    assert no_reads == []


def test_a_missing_remote_file_is_named(checksumming: XRootD) -> None:
    url = checksumming.url("nope.root")
    with pytest.raises(PubflowError, match="remote input file not found") as err:
        datasets.verify(_entry(url), url, "datasets.yaml")
    assert url in str(err.value)


def test_a_server_without_checksums_is_read_once_instead(no_reads: list[str]) -> None:
    """No ``xrootd.chksum``: the file is streamed once, and still verified."""
    with serving() as server:
        url = _publish(server)
        assert datasets.server_checksum(url, "adler32") is None
        datasets.verify(_entry(url), url, "datasets.yaml")
        with pytest.raises(PubflowError, match="differs from 00000001"):
            datasets.verify(_entry(url, adler32="00000001"), url, "datasets.yaml")
    assert len(no_reads) == 2


def test_a_sha256_entry_still_reads_the_file(checksumming: XRootD, no_reads: list[str]
                                             ) -> None:
    """XRootD servers compute no sha256: where the manifest records one, it is checked."""
    import hashlib

    url = _publish(checksumming)
    entry = _entry(url, sha256=hashlib.sha256(DATA.read_bytes()).hexdigest())
    datasets.verify(entry, url, "datasets.yaml")
    assert len(no_reads) == 1
