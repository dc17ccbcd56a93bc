"""What the publishers' command lines share: options, checks of the config, the plan, the
run-or-resume loop with its client, and the messages that start and end a run."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from steps.config import validate
from steps.errors import PubflowError
from steps.publish.bundle import Bundle
from steps.publish.http import Client, InDoubtError, RetryPolicy, check_base_url
from steps.publish.links import Links
from steps.publish.metadata import NO_CADI_ID, NO_INSPIRE_ID
from steps.publish.plan import PLAN, Step, plan_document
from steps.publish.publisher import Outcome
from steps.publish.secrets import Redactor
from steps.publish.state import STATE_NAME, State

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONFIG = "results/config.json"  # the config the validated run read
DEFAULT_RESULTS = "results"
DEFAULT_REPORT = "results/validation/report.json"
PUBLISH_DIR = "publish"


@dataclass(frozen=True)
class Options:
    """The options every publisher takes.

    Attributes:
        target: ``hepdata``, ``zenodo``, ``cap`` or ``inveniordm``.
        config: The analysis config.
        report: The validation report (the gate).
        results: The results directory the published files come from.
        out: Where the bundle and the state go (``results/publish/<target>``).
        root: The repository root (the workflow's files).
        upload: Send the requests (False: dry run).
        production: The real service (False: its sandbox).
        base_url: The service's base URL.
        policy: Timeouts and retries.
    """

    target: str
    config: Path
    report: Path
    results: Path
    out: Path
    root: Path
    upload: bool
    production: bool
    base_url: str
    policy: RetryPolicy

    @property
    def state_path(self) -> Path:
        """The target's state file."""
        return self.out / STATE_NAME

    @property
    def publish_root(self) -> Path:
        """The directory holding every target's output (``results/publish``)."""
        return self.out.parent

    @property
    def kind(self) -> str:
        """``production`` or ``sandbox``, for messages."""
        return "production" if self.production else "sandbox"


def publication(config: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The config's ``Publication`` block, which only publishing needs.

    Raises:
        PubflowError: If the config has none.
    """
    if "Publication" not in config:
        raise PubflowError("required key is missing: publishing needs the record's title, "
                           "abstract, authors and licence (see inputs/pubflow.yaml)",
                           path=source, key="Publication")
    return config["Publication"]


def check_inspire_id(config: dict[str, Any], opts: Options) -> None:
    """A record published on the real service names its paper's INSPIRE id.

    Dry runs and the sandbox go ahead with the placeholder (``ins0000000``), said aloud.

    Raises:
        PubflowError: For a production upload without ``Publication.InspireId``.
    """
    inspire = config.get("Publication", {}).get("InspireId")
    if inspire and inspire != NO_INSPIRE_ID:
        return
    if opts.upload and opts.production:
        raise PubflowError("required key is missing: a record published on the real service "
                           "names its paper (e.g. ins1234567; set it, then re-run the workflow "
                           "so that the patchset carries it too)", path=opts.config,
                           key="Publication.InspireId")
    log.warning("%s: Publication.InspireId is not set: the record carries the placeholder %s "
                "(a production upload refuses it)", opts.config, NO_INSPIRE_ID)


def check_cadi_id(config: dict[str, Any], opts: Options) -> None:
    """A CAP deposit names its analysis's CADI line (``basic_info.cadi_id``).

    CAP's cms-analysis schema requires it to publish and refuses an id another deposit
    holds, so the placeholder (``XXX-00-000``) is never sent, not even to the QA instance.
    Dry runs go ahead with it, said aloud.

    Raises:
        PubflowError: For an upload without ``Publication.CadiId``.
    """
    cadi = config.get("Publication", {}).get("CadiId")
    if cadi and cadi != NO_CADI_ID:
        return
    if opts.upload:
        raise PubflowError("required key is missing: a CAP deposit names the analysis's CADI "
                           "line (e.g. SMP-10-002); set it, then re-run", path=opts.config,
                           key="Publication.CadiId")
    log.warning("%s: Publication.CadiId is not set: the CAP metadata carries the placeholder "
                "%s (an upload refuses it)", opts.config, NO_CADI_ID)


def check_hepdata_link(links: Links, opts: Options, *, publish: bool, service: str) -> None:
    """A record published on the real service links the HEPData record.

    Raises:
        PubflowError: For ``--production --publish`` without the HEPData link.
    """
    if publish and opts.production and not links.hepdata:
        raise PubflowError(f"{service}: refusing to publish on the real service without the "
                           "link to the HEPData record: publish HEPData first or give "
                           "--hepdata-url")


def add_common_arguments(p: argparse.ArgumentParser, target: str, *, sandbox: str,
                         production: str) -> None:
    """The options every publisher takes (mode, endpoint, paths, retries)."""
    mode = p.add_argument_group("what to do (the default is safe: a dry run against the sandbox)")
    exclusive = mode.add_mutually_exclusive_group()
    exclusive.add_argument("--dry-run", dest="upload", action="store_false", default=False,
                           help="write the bundle and the request plan under --out and send "
                                "nothing (the default)")
    exclusive.add_argument("--upload", dest="upload", action="store_true",
                           help="send the requests (credentials from the environment)")
    mode.add_argument("--production", action="store_true",
                      help=f"use the real service ({production}) instead of its sandbox "
                           f"({sandbox})")
    mode.add_argument("--base-url", metavar="URL",
                      help="the service's base URL (overrides --production's choice; e.g. a "
                           "test instance)")
    paths = p.add_argument_group("files")
    paths.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG),
                       help="analysis config (its Publication block gives the metadata)")
    paths.add_argument("--report", type=Path, default=Path(DEFAULT_REPORT),
                       help="validation report: nothing is published unless it says valid and "
                            "the files still match it")
    paths.add_argument("--results", type=Path, default=Path(DEFAULT_RESULTS),
                       help="results directory the published files come from")
    paths.add_argument("--out", type=Path, default=None,
                       help=f"bundle and state directory [default: results/publish/{target}]")
    paths.add_argument("--root", type=Path, default=Path("."),
                       help="repository root (the workflow files)")
    net = p.add_argument_group("network")
    net.add_argument("--retries", type=int, default=5, metavar="N",
                     help="tries per request (and per recovery of a request whose outcome is "
                          "unknown)")
    net.add_argument("--backoff", type=float, default=2.0, metavar="SECONDS",
                     help="first wait between tries, doubled each time; Retry-After is "
                          "honoured")
    net.add_argument("--max-delay", type=float, default=120.0, metavar="SECONDS",
                     help="longest single wait")
    net.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                     help="read timeout of a request (uploads included)")
    net.add_argument("--connect-timeout", type=float, default=15.0, metavar="SECONDS",
                     help="connect timeout")


def options(args: argparse.Namespace, target: str, *, sandbox: str, production: str,
            sleep: Callable[[float], None] | None = None) -> Options:
    """The common options, checked."""
    base = args.base_url or (production if args.production else sandbox)
    policy_kwargs = {"sleep": sleep} if sleep else {}
    return Options(
        target=target,
        config=args.config,
        report=args.report,
        results=args.results,
        out=args.out or args.results / PUBLISH_DIR / target,
        root=args.root,
        upload=args.upload,
        production=args.production,
        base_url=check_base_url(base),
        policy=RetryPolicy(attempts=args.retries, backoff=args.backoff,
                           max_delay=args.max_delay, read_timeout=args.timeout,
                           connect_timeout=args.connect_timeout, **policy_kwargs),
    )


def resumable(flow: Callable[[], T], policy: RetryPolicy, service: str) -> T:
    """Run a publishing flow; when a request's outcome is unknown, run it again.

    Every flow starts by settling what its state file records as pending (asking the
    server what happened) and skips what is done, so running it again is how a re-run
    resumes, and how a request in doubt is retried within a run, up to the policy's bound.

    Raises:
        PubflowError: If the outcome is still unknown after the last try (the state keeps the
            pending request; the next run settles it).
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return flow()
        except InDoubtError as err:
            if attempt == policy.attempts:
                raise PubflowError(f"{err}. Re-run to resume: the state file records the "
                                   "request, and the next run checks what the server did "
                                   "before doing anything else") from None
            wait = policy.delay(attempt)
            log.warning("%s; checking what %s did, in %.3g s (try %d of %d)", err, service,
                        wait, attempt + 1, policy.attempts)
            policy.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def plan(opts: Options, steps: Sequence[Step], notes: Sequence[str], *, publish: bool,
         credentials: Mapping[str, str]) -> dict[str, Any]:
    """The request plan of this run (:func:`~steps.publish.plan.plan_document`), checked
    against its schema."""
    document = plan_document(opts.target, endpoint=opts.base_url, production=opts.production,
                             upload=opts.upload, publish=publish, credentials=credentials,
                             steps=steps, notes=notes)
    validate(document, "publish-plan", opts.out / "bundle" / PLAN)
    return document


def log_dry_run(bundle: Bundle) -> None:
    """Say where the dry run's bundle and plan are."""
    log.info("dry run: bundle and plan (%d requests) in %s; nothing was sent",
             len(bundle.documents[PLAN]["requests"]), bundle.path)


def send(service: str, opts: Options, state: State, redactor: Redactor,
         start: Callable[[Client], Callable[[], T]], *, token: str | None = None) -> T:
    """Run a publisher against the service, holding the state file's lock, and resuming
    (:func:`resumable`) while a request is in doubt.

    Args:
        service: The service, for messages.
        opts: The options (endpoint, retry policy).
        state: The state file.
        redactor: The secrets to keep out of every message.
        start: Makes the publisher's run from the client.
        token: Sent as ``Authorization: Bearer``, if given.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = Client(service, opts.base_url, redactor=redactor, policy=opts.policy,
                    headers=headers)
    try:
        with state.locked():
            return resumable(start(client), opts.policy, service)
    finally:
        client.close()


def log_outcome(service: str, opts: Options, noun: str, outcome: Outcome) -> None:
    """Say what a run left on a service that gives DOIs (Zenodo, InvenioRDM)."""
    status = "published" if outcome.published else "draft (not public; --publish to publish)"
    log.info("%s %s: %s %s, %s, DOI %s%s", service, opts.kind, noun, outcome.id, status,
             outcome.doi or "(none yet)", f", {outcome.url}" if outcome.url else "")
