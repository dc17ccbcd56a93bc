"""File uploads to an Invenio bucket (Zenodo's and CAP's files API), with checksum checks.

``PUT {links.bucket}/{name}`` streams a file; the answer is the stored object, with
``"checksum": "md5:<hex>"``. A checksum that differs from the local file's is a failed
upload: the object is deleted and the upload repeated (up to the retry bound).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import quote

from steps.publish.bundle import Bundle, BundleFile
from steps.publish.http import Body, Client, PermanentHttpError, TransientHttpError

log = logging.getLogger(__name__)


def md5_of(checksum: Any) -> str:
    """The hex md5 from a checksum as services report it (``md5:<hex>`` or bare hex)."""
    text = str(checksum or "")
    return text.split(":", 1)[1] if text.startswith("md5:") else text


def object_url(bucket: str, name: str) -> str:
    """The URL of an object in a bucket."""
    return f"{bucket.rstrip('/')}/{quote(name)}"


def delete_object(client: Client, bucket: str, name: str,
                  listed: Callable[[], Collection[str]]) -> None:
    """Delete an object; a 404 counts only if ``listed()`` (the deposit's files, as the
    service lists them) confirms it is gone.

    A 404 can also mean that the server has no such route, and taking that for success would
    leave the file in place and make every re-run "repair" it again.

    Raises:
        PermanentHttpError: If the service answered 404 and still lists the file.
    """
    response = client.request("DELETE", object_url(bucket, name), expect=(200, 204, 404),
                              what=f"remove {name}")
    if response.status_code == 404 and name in listed():
        raise PermanentHttpError(
            f"{client.service}: DELETE {object_url(bucket, name)} answered 404 (not found), "
            f"yet the deposit still lists {name}: the server does not remove files this way")


def put_file(client: Client, bucket: str, bundle: Bundle, file: BundleFile,
             listed: Callable[[], Collection[str]]) -> Mapping[str, Any]:
    """Stream a bundle file into the bucket and check the checksum the service reports
    (``listed`` as for :func:`delete_object`).

    Returns:
        The stored object, as the service describes it.

    Raises:
        TransientHttpError: If the reported checksum never matched within the retry bound.
    """
    for attempt in range(1, client.policy.attempts + 1):
        stored = client.json("PUT", object_url(bucket, file.name), expect=(200, 201),
                             body=Body(file=bundle.file_path(file.name)),
                             what=f"upload {file.name} ({file.size} bytes)")
        reported = md5_of((stored or {}).get("checksum"))
        if reported == file.md5:
            return stored
        log.warning("%s: %s arrived with md5 %s, not %s; removing it and uploading again "
                    "(try %d of %d)", client.service, file.name, reported or "(none)",
                    file.md5, attempt, client.policy.attempts)
        delete_object(client, bucket, file.name, listed)
    raise TransientHttpError(f"{client.service}: {file.name} never arrived intact (checksum "
                             "mismatch); re-run to try again")
