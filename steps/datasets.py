"""The dataset manifest: look a file up, verify it before anyone reads it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from steps.config import load_datasets
from steps.errors import PubflowError
from steps.io import sha256sum


def entry_for(manifest: dict[str, Any], path: str | Path) -> dict[str, Any] | None:
    """The manifest entry for ``path``, or None when the file is not an input."""
    wanted = os.path.normpath(path)
    for entry in manifest["files"]:
        if os.path.normpath(entry["path"]) == wanted:
            return entry
    return None


def verify(entry: dict[str, Any], path: str | Path, source: str | Path) -> None:
    """Check that ``path`` has the size and sha256 the manifest ``source`` records."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise PubflowError(f"input file not found (listed in {source})", path=path) from None
    if size != entry["size"]:
        raise PubflowError(
            f"size {size} bytes differs from {entry['size']} in {source} (truncated or replaced?)",
            path=path,
        )
    digest = sha256sum(path)
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
