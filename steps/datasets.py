"""The dataset manifest: look a file up, verify it before anyone reads it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from steps.config import load_datasets
from steps.errors import PubflowError, one_line
from steps.io import sha256sum
from steps.layout import is_remote, normalize


def entry_for(manifest: dict[str, Any], path: str | Path) -> dict[str, Any] | None:
    """The manifest entry for ``path``, or None when the file is not an input."""
    wanted = normalize(str(path))
    for entry in manifest["files"]:
        if normalize(entry["path"]) == wanted:
            return entry
    return None


def _remote_size_and_digest(url: str, chunk: int = 1 << 22) -> tuple[int, str]:
    """Size and sha256 of a remote file (``root://``...), streamed through fsspec."""
    import hashlib

    import fsspec

    try:
        fs, remote = fsspec.core.url_to_fs(url)
        size = int(fs.size(remote))
        digest = hashlib.sha256()
        with fs.open(remote, "rb", block_size=chunk) as f:
            while block := f.read(chunk):
                digest.update(block)
    except FileNotFoundError:
        raise PubflowError("remote input file not found", path=url) from None
    except (OSError, ValueError, RuntimeError) as err:
        raise PubflowError(f"cannot read remote file ({one_line(err)})", path=url) from None
    return size, digest.hexdigest()


def verify(entry: dict[str, Any], path: str | Path, source: str | Path) -> None:
    """Check that ``path`` has the size and sha256 the manifest ``source`` records."""
    if is_remote(str(path)):
        size, digest = _remote_size_and_digest(str(path))
    else:
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            raise PubflowError(f"input file not found (listed in {source})", path=path) from None
        digest = ""
    if size != entry["size"]:
        raise PubflowError(
            f"size {size} bytes differs from {entry['size']} in {source} (truncated or replaced?)",
            path=path,
        )
    digest = digest or sha256sum(path)
    if digest != entry["sha256"]:
        raise PubflowError(
            f"sha256 {digest[:12]}... differs from {entry['sha256'][:12]}... in {source}",
            path=path,
        )


def verify_input(manifest_path: str | Path, path: str | Path) -> dict[str, Any] | None:
    """Verify ``path`` against the manifest if it is listed there; return its entry."""
    manifest = load_datasets(manifest_path)
    entry = entry_for(manifest, path)
    if entry is not None:
        verify(entry, path, manifest_path)
    return entry
