#!/usr/bin/env python3
"""Re-enable GitHub Actions workflows through GitHub's REST API, so their schedules live on.

In a public repository GitHub disables scheduled workflows after 60 days without activity.
``PUT /repos/{owner}/{repo}/actions/workflows/{workflow_id}/enable`` ("Enable a workflow",
docs.github.com/en/rest/actions/workflows) sets a workflow active; the workflow's file name
may stand for its id; the token needs ``actions: write``; GitHub answers 204. Called weekly
by the scheduled workflow itself, the enable restarts the count well before it reaches 60.

Usage (in a job with ``permissions: actions: write``)::

    python .ci/keep_schedule_alive.py reproduce.yml

Reads ``GITHUB_TOKEN``, ``GITHUB_REPOSITORY`` (owner/name) and ``GITHUB_API_URL`` (default
https://api.github.com). Standard library only. Exit 1 with one line when GitHub refuses.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote


def enable(api: str, repository: str, workflow: str, token: str, timeout: float = 30) -> int:
    """PUT .../actions/workflows/<workflow>/enable; return GitHub's HTTP status."""
    url = (f"{api.rstrip('/')}/repos/{repository}/actions/workflows/"
           f"{quote(workflow, safe='')}/enable")
    request = urllib.request.Request(url, method="PUT", data=b"", headers={
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "pubflow-keep-schedule-alive",
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def main(argv: list[str]) -> int:
    token = os.environ.get("GITHUB_TOKEN", "")
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com")
    if not argv:
        print("usage: keep_schedule_alive.py WORKFLOW_FILE...", file=sys.stderr)
        return 2
    if not token or "/" not in repository:
        print("::error::GITHUB_TOKEN and GITHUB_REPOSITORY (owner/name) must be set",
              file=sys.stderr)
        return 1
    failed = 0
    for workflow in argv:
        try:
            status = enable(api, repository, workflow, token)
        except (urllib.error.URLError, OSError) as err:
            print(f"::error::{workflow}: GitHub unreachable ({err})", file=sys.stderr)
            failed += 1
            continue
        if status == 204:
            print(f"{repository}: workflow {workflow} enabled (its schedule runs on)")
        else:
            hint = " (does the job have permissions: actions: write?)" if status in (
                401, 403) else ""
            print(f"::error::{workflow}: GitHub answered HTTP {status} to enable{hint}",
                  file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
