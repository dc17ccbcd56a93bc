"""CERN Analysis Preservation: a deposit of the analysis schema, the workflow, and links.

The flow follows CAP's deposit REST API (Invenio-Deposit; analysispreservation.cern.ch
``cap/modules/deposit``) as cap-client 1.x uses it (``cap_client/api/*.py``), with TLS
verification on (cap-client sends every request with ``verify=False``, so it is not used):

1. ``GET api/me``: the configured schema (e.g. ``cms-analysis``) must be among the
   account's ``deposit_groups``.
2. ``POST api/deposits/`` with ``{"$ana_type": <schema>, ...metadata}`` creates a draft
   (``201``; ``links.bucket`` receives files). A published deposit is reopened with
   ``POST api/deposits/<pid>/actions/edit`` (``201``) when the analysis changes.
3. ``PUT {bucket}/{name}`` for the workflow archive and ``reana.yaml``; the answer's
   ``checksum`` (``md5:<hex>``) must be the local file's.
4. ``PATCH api/deposits/<pid>`` with a JSON Patch (``application/json-patch+json``) sets the
   metadata: title, CADI id, abstract, people, keywords, and the links to the Zenodo DOI, the
   HEPData record and the REANA workflow.
5. ``GET api/deposits/<pid>``: the files must be there with the local checksums.
6. With ``--publish`` only: ``POST api/deposits/<pid>/actions/publish`` (``202``).

CAP checks every body against the deposit's schema (``cap/modules/deposit/api.py``): a
create and a PATCH without ``required`` (a draft may be incomplete; a create refused with
``400 "Validation error: <message>."``, a PATCH with ``422`` and ``errors: [{field,
message}]``), the publication with it (``422``, e.g. ``basic_info.cadi_id``). pubflow checks
its metadata against ``steps/schemas/cap-metadata.schema.json`` (the same shapes) before
sending, and an upload needs ``Publication.CadiId``.

Authentication: ``Authorization: Bearer $CAP_ACCESS_TOKEN``. The default endpoint is CAP's QA
instance, the nearest thing to a sandbox ("data may disappear after a while");
``--production`` uses analysispreservation.cern.ch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from steps.config import load_analysis, validate
from steps.errors import PubflowError
from steps.publish import buckets, common, links
from steps.publish.bundle import WORKFLOW_ARCHIVE, Bundle, BundleFile, write_bundle
from steps.publish.gate import check_gate
from steps.publish.http import Body, Client, PermanentHttpError
from steps.publish.metadata import cap_metadata, digest
from steps.publish.plan import PLAN, Step
from steps.publish.publisher import DepositPublisher, Outcome
from steps.publish.secrets import Redactor, credential, redacted_logging
from steps.publish.state import State, utc_now

log = logging.getLogger(__name__)

SANDBOX = "https://analysispreservation-qa.cern.ch"
PRODUCTION = "https://analysispreservation.cern.ch"
DEPOSITS = "api/deposits"
TOKEN_ENV = "CAP_ACCESS_TOKEN"
CREDENTIALS = {TOKEN_ENV: "Authorization: Bearer header"}
METADATA = "metadata.json"
DEFAULT_SCHEMA = "cms-analysis"
PATCH_TYPE = "application/json-patch+json"
PAGE_SIZE = 100


def patch_ops(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON Patch setting each top-level field ("add" replaces an existing member)."""
    return [{"op": "add", "path": f"/{key}", "value": value}
            for key, value in sorted(metadata.items())]


@contextlib.contextmanager
def schema_refusal(schema: str) -> Iterator[None]:
    """A refusal by CAP's schema check, told as what to do (the server's field errors kept).

    CAP answers ``400 "Validation error: ..."`` to a create, ``422`` with the fields to a
    PATCH or a publication; nothing was stored, and repeating the request cannot help.
    """
    try:
        yield
    except PermanentHttpError as err:
        text = str(err).rstrip(".")
        if err.status not in (400, 422) or "Validation error" not in text:
            raise
        # a create's refusal carries only the first error's message, no field
        what = ("correct the field named" if err.status == 422 else
                "CAP names no field on a create; correct the value quoted")
        if "already attached to another record" in text:
            what = "another CAP deposit holds this CADI id (basic_info.cadi_id): check it"
        raise PermanentHttpError(
            f"{text}. CAP's {schema!r} schema refuses the deposit metadata: {what} (the "
            "config's Publication block, or the --metadata file), then re-run",
            status=err.status) from None


def _remote_files(dep: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["key"]: {"md5": buckets.md5_of(f.get("checksum")), "size": f.get("size")}
            for f in dep.get("files") or [] if "key" in f}


def _describe(dep: Mapping[str, Any]) -> dict[str, Any]:
    links_ = dep.get("links") or {}
    return {"pid": dep["id"], "bucket": links_.get("bucket"), "html": links_.get("html", ""),
            "status": dep.get("status")}


class CAPPublisher(DepositPublisher):
    """One run of the CAP flow, resumable from the state file.

    It takes :class:`~steps.publish.publisher.DepositPublisher`'s arguments, and:

    Args:
        schema: CAP analysis schema (``$ana_type``).
        pid: An existing deposit to use (when the state has none).
    """

    service = "CAP"
    collection = DEPOSITS
    logger = log

    def __init__(self, client: Client, state: State, bundle: Bundle, metadata: dict[str, Any],
                 *, schema: str, publish: bool, pid: str | None, production: bool) -> None:
        super().__init__(client, state, bundle, metadata, publish=publish,
                         production=production)
        self.schema = schema
        self.pid = pid

    def _my_drafts(self) -> list[dict[str, Any]]:
        answer = self.client.json("GET", f"{DEPOSITS}/", what="list my drafts",
                                  params={"q": "", "by_me": "True", "size": str(PAGE_SIZE)})
        return list(((answer or {}).get("hits") or {}).get("hits") or [])

    def _settle_pending(self, pending: dict[str, Any]) -> None:
        s = self.section
        if pending["op"] == "create":
            known = set(pending.get("known", []))
            created = self._created_in_doubt(
                [d for d in self._my_drafts() if d.get("id") not in known
                 and (d.get("metadata") or {}).get("general_title") == pending["title"]],
                pending["title"], ", then re-run with --pid")
            if created is not None:
                log.info("CAP: the lost creation did happen: adopting %s", created["id"])
                s["deposit"] = _describe(created)
                s["files"] = {}
        elif pending["op"] in ("publish", "edit"):
            dep = self._get(pending["pid"], "the deposit")
            if dep is not None:
                s["deposit"] = _describe(dep)
                if pending["op"] == "publish" and dep.get("status") == "published":
                    s["published"] = {"recid": dep.get("recid"), "at": utc_now(),
                                      "fingerprint": pending.get("fingerprint")}

    def _open(self) -> dict[str, Any] | None:
        """The draft to fill, or None when the published deposit is up to date."""
        s = self.section
        pid = (s.get("deposit") or {}).get("pid") or self.pid
        dep = self._get(pid, "the deposit") if pid else None
        if pid and dep is None:
            if s.get("deposit"):
                log.warning("CAP: deposit %s no longer exists; starting over", pid)
                for key in ("deposit", "files", "metadata_sha256", "published"):
                    s.pop(key, None)
                self.state.save()
            else:
                raise PubflowError(f"CAP: no deposit {pid} (--pid)")
        if dep is not None:
            s["deposit"] = _describe(dep)
            if dep.get("status") != "published":
                return dep
            if (s.get("published") or {}).get("fingerprint") == self._fingerprint():
                log.info("CAP: %s is published with exactly these files and metadata: nothing "
                         "to do", dep["id"])
                return None
            with self.state.recording(self.endpoint, "edit", pid=dep["id"]):
                dep = self.client.json("POST", f"{DEPOSITS}/{dep['id']}/actions/edit",
                                       expect=(201,), what="reopen the published deposit")
            s["deposit"] = _describe(dep)
            self.state.settle(self.endpoint)
            self.changed = True
            return dep
        return self._create()

    def _create(self) -> dict[str, Any]:
        me = self.client.json("GET", "api/me", what="the account's analysis schemas") or {}
        groups = [g.get("deposit_group") for g in me.get("deposit_groups", [])]
        if self.schema not in groups:
            raise PubflowError(f"CAP: this account cannot create {self.schema!r} deposits "
                               f"(available: {', '.join(str(g) for g in groups) or 'none'}); "
                               "choose one with --schema")
        known = [d.get("id") for d in self._my_drafts()]
        with (schema_refusal(self.schema),
              self.state.recording(self.endpoint, "create",
                                   title=self.metadata["general_title"], known=known)):
            dep = self.client.json("POST", f"{DEPOSITS}/", expect=(201,),
                                   body=Body(json={"$ana_type": self.schema, **self.metadata}),
                                   what=f"create a {self.schema} draft")
        self.section["deposit"] = _describe(dep)
        self.section["files"] = {}
        self.state.settle(self.endpoint)
        self.changed = True
        log.info("CAP: created draft %s", dep["id"])
        return dep

    def _sync_files(self, dep: Mapping[str, Any]) -> None:
        bucket = (dep.get("links") or {}).get("bucket")
        if not bucket:
            raise PubflowError(f"CAP: deposit {dep['id']} has no bucket link")
        remote = _remote_files(dep)
        done: dict[str, Any] = self.section.setdefault("files", {})
        for file in self.bundle.files:
            if remote.get(file.name, {}).get("md5") != file.md5:
                buckets.put_file(self.client, bucket, self.bundle, file,
                                 lambda: set(_remote_files(self._get(dep["id"], "the deposit")
                                                           or {})))
                self.changed = True
            done[file.name] = {"md5": file.md5, "size": file.size}
            self.state.save()

    def _send_metadata(self, dep: Mapping[str, Any]) -> None:
        # "add" replaces a member that exists: the patch gives the same result when repeated.
        with schema_refusal(self.schema):
            self.client.json("PATCH", f"{DEPOSITS}/{dep['id']}", expect=(200,), idempotent=True,
                             body=Body(data=json.dumps(patch_ops(self.metadata)),
                                       content_type=PATCH_TYPE),
                             what="set the metadata")

    def _verify(self, dep: Mapping[str, Any]) -> None:
        fresh = self._get(dep["id"], "the deposit") or {}
        remote = _remote_files(fresh)
        problems = [f"{f.name} is missing" if f.name not in remote
                    else f"{f.name} differs (md5 {remote[f.name]['md5']}, local {f.md5})"
                    for f in self.bundle.files if remote.get(f.name, {}).get("md5") != f.md5]
        if problems:
            for name in list(self.section.get("files", {})):
                if remote.get(name, {}).get("md5") != self.local.get(name):
                    self.section["files"].pop(name)
            self.state.save()
            raise PubflowError(f"CAP: the deposit's files do not match the bundle: "
                               f"{'; '.join(problems)}. Re-run to repair it")

    def _publish(self, dep: Mapping[str, Any]) -> None:
        fingerprint = self._fingerprint()
        with (schema_refusal(self.schema),
              self.state.recording(self.endpoint, "publish", pid=dep["id"],
                                   fingerprint=fingerprint)):
            published = self.client.json("POST", f"{DEPOSITS}/{dep['id']}/actions/publish",
                                         expect=(202,), what="publish") or {}
        s = self.section
        s["deposit"] = {**s["deposit"], "status": "published"}
        s["published"] = {"recid": published.get("recid"), "at": utc_now(),
                          "fingerprint": fingerprint}
        self.state.settle(self.endpoint)
        self.changed = True
        log.info("CAP: published %s", dep["id"])

    def _outcome(self) -> Outcome:
        deposit = self.section["deposit"]
        return Outcome(deposit["pid"], deposit.get("html", ""), None,
                       published=deposit.get("status") == "published", changed=self.changed)


def plan_steps(files: tuple[BundleFile, ...], metadata: dict[str, Any],
               section: Mapping[str, Any], *, base: str, schema: str, publish: bool,
               pid: str | None) -> tuple[list[Step], list[str]]:
    """The requests an upload would send, given what the state file records."""
    api = f"{base}/{DEPOSITS}"
    steps: list[Step] = []
    notes: list[str] = []
    deposit = section.get("deposit") or ({"pid": pid} if pid else None)
    uploaded = {k: v.get("md5") for k, v in (section.get("files") or {}).items()}
    if section.get("pending"):
        steps.append(Step("settle-pending", "GET", f"{api}/",
                          note=f"did the pending {section['pending']['op']} happen?"))
    if deposit:
        steps.append(Step("resume", "GET", f"{api}/{deposit['pid']}"))
        if deposit.get("status") == "published":
            steps.append(Step("edit", "POST", f"{api}/{deposit['pid']}/actions/edit",
                              when="if the files or metadata changed since publication"))
        dep_id, bucket = deposit["pid"], deposit.get("bucket") or "{links.bucket}"
    else:
        steps.append(Step("check-schema", "GET", f"{base}/api/me",
                          note=f"{schema!r} must be among the account's deposit_groups"))
        steps.append(Step("find-drafts", "GET", f"{api}/?q=&by_me=True",
                          note="drafts that exist before the creation"))
        steps.append(Step("create", "POST", f"{api}/", body=f'{METADATA} + "$ana_type": '
                                                            f'"{schema}"'))
        dep_id, bucket = "{id}", "{links.bucket}"
        uploaded = {}
    for file in files:
        if uploaded.get(file.name) != file.md5:
            steps.append(Step("upload", "PUT", f"{bucket}/{file.name}",
                              body=f"files/{file.name}",
                              note=f"{file.size} bytes, md5 {file.md5}: must match the "
                                   "checksum CAP reports"))
    if not deposit or section.get("metadata_sha256") != digest(metadata):
        steps.append(Step("set-metadata", "PATCH", f"{api}/{dep_id}",
                          body=f"JSON Patch ({PATCH_TYPE}) adding each field of {METADATA}"))
    steps.append(Step("verify", "GET", f"{api}/{dep_id}", note="files present with the local "
                                                             "checksums"))
    if publish:
        steps.append(Step("publish", "POST", f"{api}/{dep_id}/actions/publish"))
    else:
        notes.append("the deposit stays a draft: review it on CAP, then re-run with --publish")
    return steps, notes


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``cap`` subcommand's options."""
    common.add_common_arguments(p, "cap", sandbox=f"{SANDBOX} (CAP's QA instance)",
                                production=PRODUCTION)
    c = p.add_argument_group("CAP")
    c.add_argument("--schema", default=DEFAULT_SCHEMA,
                   help="CAP analysis schema of the deposit ($ana_type)")
    c.add_argument("--publish", action="store_true",
                   help="publish the deposit (within the collaboration). Without it the "
                        "deposit stays a draft")
    c.add_argument("--pid", default=None,
                   help="an existing deposit to update (only needed when the state file does "
                        "not know it)")
    c.add_argument("--metadata", type=Path, default=None,
                   help="JSON or YAML with further fields of the experiment's schema, merged "
                        "into the metadata")
    c.add_argument("--reana-url", metavar="URL",
                   help="the REANA workflow run to link")
    c.add_argument("--code-url", metavar="URL", help="the analysis code's repository")
    c.add_argument("--hepdata-url", metavar="URL",
                   help="the HEPData record [default: from results/publish/hepdata]")
    c.add_argument("--zenodo-doi", metavar="DOI",
                   help="the Zenodo DOI [default: from results/publish/zenodo]")


def _extra_metadata(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        extra = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PubflowError(f"cannot read the extra metadata ({err})", path=path) from None
    if not isinstance(extra, dict):
        raise PubflowError("extra metadata must be a mapping", path=path)
    return extra


def main(args: argparse.Namespace) -> None:
    """Write the bundle and plan; with ``--upload``, send them."""
    opts = common.options(args, "cap", sandbox=SANDBOX, production=PRODUCTION)
    redactor = Redactor()
    token = credential(TOKEN_ENV, purpose="a CAP access token (from the CAP web interface's "
                       "account settings)") if opts.upload else None
    redactor.add(token)
    with redacted_logging(redactor):
        config = load_analysis(opts.config)
        common.check_inspire_id(config, opts)
        common.check_cadi_id(config, opts)
        reana = opts.root / "reana.yaml"
        datasets = config.get("Datasets")
        workflow_inputs = tuple(str(p) for p in (opts.config, datasets) if p)
        check_gate(opts.report, workflow_inputs)
        state = State(opts.state_path, "cap", redactor)
        found = links.discover(opts.publish_root, production=opts.production,
                               hepdata=args.hepdata_url, zenodo=args.zenodo_doi,
                               code=args.code_url, reana=args.reana_url)
        for what, value in (("Zenodo DOI", found.zenodo_doi), ("HEPData record", found.hepdata),
                            ("REANA workflow (--reana-url)", found.reana)):
            if not value:
                log.warning("CAP: no %s to link yet", what)
        metadata = cap_metadata(common.publication(config, opts.config), links=found,
                                extra=_extra_metadata(args.metadata))
        validate(metadata, "cap-metadata", f"{opts.config} (Publication, as CAP metadata)")

        def documents(files: tuple[BundleFile, ...]) -> dict[str, Any]:
            steps, notes = plan_steps(files, metadata, state.peek(opts.base_url),
                                      base=opts.base_url, schema=args.schema,
                                      publish=args.publish, pid=args.pid)
            return {METADATA: metadata, PLAN: common.plan(opts, steps, notes,
                                                          publish=args.publish,
                                                          credentials=CREDENTIALS)}

        if not reana.is_file():
            raise PubflowError("the REANA specification to attach is missing", path=reana)
        bundle = write_bundle(opts.out, {"reana.yaml": reana}, documents,
                              workflow_root=opts.root, workflow_extra=workflow_inputs)
        assert WORKFLOW_ARCHIVE in bundle.by_name()
        if not opts.upload:
            common.log_dry_run(bundle)
            return
        outcome = common.send(
            "CAP", opts, state, redactor, token=token,
            start=lambda client: CAPPublisher(
                client, state, bundle, metadata, schema=args.schema, publish=args.publish,
                pid=args.pid, production=opts.production).run)
        log.info("CAP %s: deposit %s, %s%s", opts.kind, outcome.id,
                 "published" if outcome.published else "draft (--publish to publish)",
                 f", {outcome.url}" if outcome.url else "")
