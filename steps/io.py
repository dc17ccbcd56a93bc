"""File plumbing: atomic writes, digests, JSON, reproducible ROOT files.

Every output goes through :func:`atomic_path` so that a failed or interrupted step never
leaves a half-written file that a re-run (or Snakemake) would mistake for a result.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steps.errors import PubflowError, one_line

# ROOT stores creation times in a 32-bit field counted from 1995; honour the
# reproducible-builds convention, with a fixed default so two runs give identical bytes.
DEFAULT_EPOCH = 1767225600  # 2026-01-01T00:00:00Z


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    Works for files and directories (whatever the caller creates at the temporary path).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp = tmpdir / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by a previous step (its errors are the caller's to word)."""
    with open(path) as f:
        return json.load(f)


def read_input_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON input of a step; a missing or malformed file is one line naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise PubflowError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PubflowError(f"cannot read it ({one_line(err)})", path=path) from None
    except json.JSONDecodeError as err:
        raise PubflowError(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})",
                           path=path) from None


def sha256sum(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def reproducible_root_writing(seed: int) -> Iterator[dict[str, Any]]:
    """Make uproot write byte-identical files: fixed timestamps and UUIDs.

    uproot stamps every file, directory and key with ``datetime.now()`` and a fresh
    ``uuid1``; there is no option for the former, so the writer modules' ``datetime`` is
    swapped for one frozen at ``SOURCE_DATE_EPOCH`` for the duration. Yields the keyword
    arguments to pass to ``uproot.recreate``.
    """
    import uproot.writing._cascade
    import uproot.writing._cascadentuple
    import uproot.writing._cascadetree
    import uproot.writing.writable

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    frozen = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).replace(tzinfo=None)

    class _Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return frozen

    shim = types.SimpleNamespace(datetime=_Frozen)
    modules = [
        uproot.writing._cascade,
        uproot.writing._cascadetree,
        uproot.writing._cascadentuple,
        uproot.writing.writable,
    ]
    saved = [m.datetime for m in modules]  # type: ignore[attr-defined]
    counter = iter(range(1 << 62))
    for m in modules:
        m.datetime = shim  # type: ignore[attr-defined]
    try:
        yield {"uuid_function": lambda: uuid.UUID(int=(seed << 64) + next(counter))}
    finally:
        for m, original in zip(modules, saved, strict=True):
            m.datetime = original  # type: ignore[attr-defined]
