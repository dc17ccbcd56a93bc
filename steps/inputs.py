"""inputs: what a select job does with its input file under the analysis's ``InputPolicy``.

Which manifest entry vouches for the file, whether it may be skipped (``OnUnreadable: skip``
for every sample it feeds), whether a failed check means the file cannot be had in full
(unreadable: skipped) or differs from the manifest (wrong data: always fatal), and the record
of its input each partial carries for ``steps.merge``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from steps import layout
from steps.config import load_datasets
from steps.datasets import entry_for, verify
from steps.errors import PubflowError, one_line
from steps.io import atomic_path

if TYPE_CHECKING:
    from steps.select import Template

log = logging.getLogger("steps.select")  # its messages are the select job's


#: The key of a partial's record of its input (JSON text). Never a histogram's: those end in
#: ``/sumw``, ``/sumw2`` or ``/edges``.
INPUT_RECORD = "input"


class Unreadable(PubflowError):
    """An input file that cannot be had in full: missing, unreachable, not readable, shorter
    than the manifest says, or not decodable. (One that reads in full but differs from the
    manifest is wrong data: a plain PubflowError.)"""


def file_policy(config: dict[str, Any], todo: list[Template]) -> str:
    """``skip`` if every sample the file feeds skips unreadable files, else ``fail``: a file
    shared with a sample that must not lose it is never skipped."""
    policies = {layout.on_unreadable(config, t.sample) for t in todo}
    return "skip" if policies == {"skip"} else "fail"


def manifest_entry(config: dict[str, Any], input_path: str) -> dict[str, Any] | None:
    """The file's manifest entry; None for a file the workflow makes (``Unlisted``).

    Raises:
        PubflowError: If the manifest does not list a file the workflow does not make.
    """
    entry = entry_for(load_datasets(config["Datasets"]), input_path)
    if entry is None and layout.normalize(input_path) not in layout.unlisted_files(config):
        raise PubflowError(
            f"not in the dataset manifest {config['Datasets']}, so nothing vouches for it: add "
            "it with `python -m steps.datasets add FILE` (or, if the workflow makes it, name "
            "its sample in Unlisted)", path=input_path)
    return entry


def _tree_key(name: str) -> str:
    """A tree's name as the manifest records it (no leading slash, no cycle)."""
    return name.strip("/").split(";")[0]


def check_trees(entry: dict[str, Any], input_path: str, source: str, todo: list[Template]
                ) -> None:
    """Every tree the histograms read is one the manifest counts in the file: a tree missing
    there is the config's mistake, which no file can fix, so it is never skipped."""
    trees = {_tree_key(name) for name in entry.get("trees", {})}
    for t in todo:
        if _tree_key(t.tree) not in trees:
            raise PubflowError(f"no tree {t.tree!r} in the file ({source} lists "
                               f"{', '.join(sorted(trees)) or 'none'})", path=input_path)


def verify_readable(entry: dict[str, Any], input_path: str, source: str, classify: bool
                    ) -> None:
    """Verify the file against its manifest entry (size, checksums).

    With ``classify``, a failure is :class:`Unreadable` unless the file is whole and can be
    opened (:func:`_whole`): then its bytes differ from the manifest's, which is wrong data.

    Raises:
        Unreadable: If the file cannot be had in full (or, without ``classify``, cannot be
            read while it is checked).
        PubflowError: If it differs from the manifest.
    """
    try:
        verify(entry, input_path, source)
    except OSError as err:  # e.g. a local file without read permission, an I/O error
        raise Unreadable(f"cannot read it ({one_line(err)})", path=input_path) from None
    except PubflowError as err:
        if classify and not _whole(entry, input_path):
            raise Unreadable(err.detail, path=input_path) from None
        raise


def _whole(entry: dict[str, Any], path: str) -> bool:
    """Whether the file is at least as long as the manifest says and can be opened.

    Asked only after a failed verification, so the files that pass cost nothing more.
    """
    try:
        if layout.is_remote(path):
            import fsspec

            fs, remote = fsspec.core.url_to_fs(path)
            size = int(fs.size(remote))
            with fs.open(remote, "rb") as f:
                f.read(1)
        else:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                f.read(1)
    except (OSError, ValueError, RuntimeError):  # what fsspec and XRootD raise for a lost file
        return False
    return size >= int(entry["size"])


def input_record(input_path: str, entry: dict[str, Any] | None, todo: list[Template],
                 skipped: str | None = None) -> dict[str, Any]:
    """What a partial records of its input: the file, the manifest's entries of each tree
    its histograms read (None for a file the manifest does not list), and why it was
    skipped (None if it was read)."""
    trees = {_tree_key(k): int(v) for k, v in (entry or {}).get("trees", {}).items()}
    entries = None if entry is None else {
        t.tree: trees.get(_tree_key(t.tree)) for t in todo}
    return {"file": input_path, "entries": entries, "skipped": skipped}


def write_partial(output: str, arrays: dict[str, np.ndarray], record: dict[str, Any]) -> None:
    """Write the partial histograms and the record of their input, atomically."""
    text = np.array(json.dumps(record, sort_keys=True))  # a str array: no pickle to load it
    with atomic_path(output) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, **{INPUT_RECORD: text})


def skip(output: str, input_path: str, entry: dict[str, Any], todo: list[Template],
          err: PubflowError) -> int:
    """Write the partial of a skipped file (no histograms, the record of why); warn once."""
    record = input_record(input_path, entry, todo, err.detail)
    write_partial(output, {}, record)
    counts = ", ".join(f"{n} entries in {tree}" for tree, n in record["entries"].items())
    log.warning("%s: unreadable, skipped (InputPolicy OnUnreadable: skip): %s; the manifest "
                "counts %s", input_path, record["skipped"], counts)
    return 0
