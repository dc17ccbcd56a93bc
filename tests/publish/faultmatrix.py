"""The fault matrix the publisher tests share: flows, their clean run, a fault then a re-run.

A flow is one publishing command against one fake service, with what must hold afterwards.
In each case one request of the flow fails once in one way (``fakes.FAULT_KINDS``) with no
retries allowed, so that the run stops where the fault hits; the next run must finish the
job (exactly one record, every file there with the local checksum, nothing published
twice), a further run must change nothing, and no secret may be anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import leaks, net


@dataclass(frozen=True)
class Flow:
    """A publishing flow: the service, the command, what comes first, what must hold after.

    Attributes:
        service: Fixture name of the fake.
        args: The command (the base URL is added).
        requests: How many requests the flow sends when nothing fails.
        before: Changes made after a clean first publication (None: start from nothing).
        check: What must hold afterwards.
        after: Requests a further run may send (it must change nothing).
        answer: What the user adds to the command when a run asks them what a lost request
            did (HEPData lists no sandbox records), given the fake; None: never asked.
    """

    service: str
    args: tuple[str, ...]
    requests: int
    before: Callable[[Path], None] | None
    check: Callable[[Path, Any], None]
    after: int = 0
    answer: Callable[[Any], list[str]] | None = None


def prepare(flow: Flow, repo: Path, service: Any, publish: Callable[..., Any],
            env: dict[str, str]) -> tuple[str, ...]:
    """The flow's command against ``service``, after the first publication if it needs one."""
    args = (*flow.args, "--base-url", service.url)
    if flow.before is not None:
        assert publish(*args, *net(), env=env).rc == 0
        flow.before(repo)
    return args


def assert_request_count(flow: Flow, repo: Path, service: Any, publish: Callable[..., Any],
                         env: dict[str, str]) -> None:
    """The clean flow sends exactly ``flow.requests`` (so that the matrix covers each)."""
    args = prepare(flow, repo, service, publish, env)
    sent = len(service.log)
    assert publish(*args, *net(), env=env).rc == 0
    assert len(service.log) - sent == flow.requests, service.log[sent:]
    flow.check(repo, service)


def assert_fault_is_repaired(flow: Flow, index: int, kind: str, repo: Path, service: Any,
                             publish: Callable[..., Any], env: dict[str, str]) -> None:
    """Request ``index`` of the flow fails with ``kind``: that run fails, the next finishes
    the job, a further one sends at most ``flow.after`` requests, and nothing leaks."""
    args = prepare(flow, repo, service, publish, env)
    service.inject(index, kind)
    # a short read timeout only where the fault needs one: on two shared cores a normal
    # answer can take longer than that, and a spurious timeout would move the fault
    runs = [publish(*args, *net(timeout=0.2 if kind == "timeout" else 0.5), env=env)]
    assert runs[0].rc == 1, runs[0].out  # the fault did hit (one try only)
    runs.append(publish(*args, *net(), env=env))
    if runs[-1].rc != 0 and flow.answer is not None and "--discard-pending" in runs[-1].out:
        assert kind != "429"  # a refused request is never left in doubt
        runs.append(publish(*args, *flow.answer(service), *net(), env=env))
    assert runs[-1].rc == 0, [r.out for r in runs]
    flow.check(repo, service)
    sent = len(service.log)
    runs.append(publish(*args, *net(), env=env))
    assert runs[-1].rc == 0 and len(service.log) - sent == flow.after
    flow.check(repo, service)
    assert not leaks(repo, *(r.out + r.log for r in runs))
