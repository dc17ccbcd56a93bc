"""Record metadata from the ``Publication`` block of pubflow's config (``inputs/pubflow.yaml``).

* Zenodo: the legacy deposit API's metadata (https://developers.zenodo.org, "Deposit
  metadata"): ``upload_type``, ``title``, ``creators`` (``Family, Given`` names with
  affiliation and ORCID), ``description`` (HTML), ``access_right``, ``license``, ``keywords``
  and ``related_identifiers`` (the HEPData record, the INSPIRE paper, the code).
* InvenioRDM: the same record through InvenioRDM's own API, as a draft body: ``metadata``
  (invenio-rdm-records ``MetadataSchema``: ``person_or_org`` creators, vocabulary ids for the
  resource type, rights and relations), ``access`` and ``files``.
* CAP: a title, the CADI id, the abstract and people, keywords, and links to the Zenodo DOI,
  the HEPData record and the REANA workflow, in the shapes of CAP's ``cms-analysis`` schema
  (v0.0.1, ``cap/modules/fixtures/schemas/cms.json`` in cernanalysispreservation/
  analysispreservation.cern.ch; a copy in ``tests/data/cap/schemas``): ``basic_info.cadi_id``
  (required to publish), ``additional_resources.documentations`` (strings: the URLs, what
  each is in ``additional_resources.comments``), ``additional_resources.publications``
  (``persistent_identifiers``: strings). Other fields of the schema: ``--metadata FILE``
  merges them.

Zenodo's and CAP's are checked against pubflow's schemas
(``steps/schemas/zenodo-metadata.schema.json``, ``cap-metadata.schema.json``) before any
request is sent; an InvenioRDM instance checks its own (a draft lists the problems).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import html
import json
from collections.abc import Iterable, Mapping
from typing import Any

from steps import __version__
from steps.publish.links import Links

#: INSPIRE id meaning "not assigned yet" (steps/schemas/analysis.schema.json).
NO_INSPIRE_ID = "ins0000000"

#: CADI id meaning "not set" (steps/schemas/analysis.schema.json): a dry run shows it, an
#: upload refuses it. It has the CADI form CAP's schema checks, and no CADI group is "XXX".
NO_CADI_ID = "XXX-00-000"

#: Metadata fields that do not identify an InvenioRDM version: InvenioRDM itself resets
#: ``publication_date`` on every new version (MetadataComponent.new_version).
UNVERSIONED = ("publication_date",)

#: What each published file is, for the description (by name prefix or name).
_CONTENTS = (
    ("pubflow-workflow.tar.gz", ("the workflow: Snakefile and rules, the <code>steps</code> "
                                 "package, the analysis configuration and dataset manifest, "
                                 "the REANA specification and the container environments")),
    ("hepdata-submission.tar.gz", ("the validated HEPData submission (tables, figures and "
                                   "the likelihoods)")),
    ("model-", "the pyhf likelihood (background-only workspace and signal patchset)"),
    ("fit-", "fit results and upper limits (JSON)"),
    ("figure-", "figures (PNG and PDF)"),
    ("validation-report.json", ("the validation report (every artefact checked by the tool "
                                "its consumer uses)")),
    ("ro-crate-metadata.json", "provenance (RO-Crate)"),
)


def digest(obj: Any) -> str:
    """sha256 of a JSON document in canonical form (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def keywords(publication: Mapping[str, Any]) -> list[str]:
    """Free-text keywords: HEPData phrases, observables and reactions, without repeats."""
    found: list[str] = []
    groups = publication.get("Keywords", {})
    for group in ("phrases", "observables", "reactions"):
        for word in groups.get(group, []):
            if str(word) not in found:
                found.append(str(word))
    return found


def spdx_to_zenodo(spdx: str) -> str:
    """Zenodo's licence id for an SPDX identifier (Zenodo uses the lower-cased SPDX ids)."""
    return spdx.strip().lower()


def inspire_url(publication: Mapping[str, Any]) -> str | None:
    """The INSPIRE literature URL of the paper, if an id is assigned."""
    inspire = publication.get("InspireId")
    if not inspire or inspire == NO_INSPIRE_ID:
        return None
    return f"https://inspirehep.net/literature/{inspire.removeprefix('ins')}"


def describe_contents(names: Iterable[str]) -> list[str]:
    """One phrase per kind of file present, in a fixed order."""
    names = list(names)
    return [text for key, text in _CONTENTS if any(n == key or n.startswith(key)
                                                   for n in names)]


def _description(publication: Mapping[str, Any], files: Iterable[str], holds: str) -> str:
    """The record's HTML description: the abstract, then what the files are.

    Args:
        publication: The ``Publication`` block.
        files: Names of the files in the record.
        holds: The sentence that introduces the list of files.
    """
    contents = "".join(f"<li>{text}</li>" for text in describe_contents(files))
    return (f"<p>{html.escape(' '.join(publication['Abstract'].split()))}</p>"
            f"<p>{holds}</p><ul>{contents}</ul>")


def _related(publication: Mapping[str, Any], links: Links) -> list[tuple[str, str, str]]:
    """What the record points to, as (URL, DataCite relation, resource type): the HEPData
    record and the paper it supplements, and the code it is compiled by."""
    found = [(links.hepdata, "isSupplementTo", "dataset"),
             (inspire_url(publication), "isSupplementTo", "publication-article"),
             (links.code, "isCompiledBy", "software")]
    return [(url, relation, kind) for url, relation, kind in found if url]


def _person(author: Mapping[str, Any]) -> dict[str, Any]:
    """An author as Zenodo's legacy ``creators`` and CAP's ``people_info`` both take it."""
    person = {"name": author["Name"]}
    if author.get("Affiliation"):
        person["affiliation"] = author["Affiliation"]
    if author.get("ORCID"):
        person["orcid"] = author["ORCID"]
    return person


def zenodo_metadata(
    publication: Mapping[str, Any],
    *,
    files: Iterable[str],
    links: Links,
    license_id: str | None = None,
    upload_type: str = "dataset",
) -> dict[str, Any]:
    """The deposition metadata.

    Args:
        publication: The ``Publication`` block of the analysis config.
        files: Names of the files in the deposit (for the description).
        links: The HEPData record and code to link.
        license_id: Zenodo licence id (default: from ``Publication.License.Name``).
        upload_type: Zenodo's upload type.
    """
    metadata: dict[str, Any] = {
        "upload_type": upload_type,
        "title": publication["Title"],
        "creators": [_person(a) for a in publication["Authors"]],
        "description": _description(publication, files, "This deposit holds everything "
                                                        "needed to reproduce the record:"),
        "access_right": "open",
        "license": license_id or spdx_to_zenodo(publication["License"]["Name"]),
        "keywords": keywords(publication),
        "notes": f"Produced and uploaded by pubflow {__version__}.",
    }
    related = [{"identifier": url, "relation": relation, "resource_type": kind}
               for url, relation, kind in _related(publication, links)]
    if related:
        metadata["related_identifiers"] = related
    return metadata


def _rdm_creator(author: Mapping[str, Any]) -> dict[str, Any]:
    """An author as InvenioRDM's ``CreatorSchema``: ``Family, Given`` is a person, anything
    else a collaboration (an organisation)."""
    name = str(author["Name"]).strip()
    family, comma, given = name.partition(",")
    person: dict[str, Any]
    if comma and family.strip():
        person = {"type": "personal", "family_name": family.strip()}
        if given.strip():
            person["given_name"] = given.strip()
    else:
        person = {"type": "organizational", "name": name}
    if author.get("ORCID"):
        person["identifiers"] = [{"scheme": "orcid", "identifier": author["ORCID"]}]
    creator: dict[str, Any] = {"person_or_org": person}
    if author.get("Affiliation"):
        creator["affiliations"] = [{"name": author["Affiliation"]}]
    return creator


def inveniordm_metadata(
    publication: Mapping[str, Any],
    *,
    files: Iterable[str],
    links: Links,
    rights: str | None = None,
    resource_type: str = "dataset",
    publisher: str | None = None,
    today: datetime.date | None = None,
) -> dict[str, Any]:
    """The draft's body: ``metadata`` (invenio-rdm-records ``MetadataSchema``), ``access``
    and ``files``.

    Args:
        publication: The ``Publication`` block of the analysis config.
        files: Names of the files in the record (for the description).
        links: The HEPData record and code to link.
        rights: Licence id of the instance's vocabulary (default: the SPDX id of
            ``Publication.License.Name``, lower-cased, as InvenioRDM's licences are).
        resource_type: Resource type id (vocabulary ``resourcetypes``).
        publisher: The publisher (a DataCite DOI needs one; Zenodo's is "Zenodo").
        today: The publication date (default: today, UTC).
    """
    date = today or datetime.datetime.now(datetime.UTC).date()
    metadata: dict[str, Any] = {
        "resource_type": {"id": resource_type},
        "title": publication["Title"],
        "publication_date": date.isoformat(),
        "creators": [_rdm_creator(a) for a in publication["Authors"]],
        "description": _description(publication, files, "This record holds everything "
                                                        "needed to reproduce it:"),
        "rights": [{"id": rights or spdx_to_zenodo(publication["License"]["Name"])}],
        "subjects": [{"subject": word} for word in keywords(publication)],
        "additional_descriptions": [{"description": "Produced and uploaded by pubflow "
                                                    f"{__version__}.",
                                     "type": {"id": "other"}}],
    }
    # InvenioRDM's relation vocabulary holds DataCite's relations, lower-cased
    related = [{"identifier": url, "scheme": "url", "relation_type": {"id": relation.lower()},
                "resource_type": {"id": kind}}
               for url, relation, kind in _related(publication, links)]
    if related:
        metadata["related_identifiers"] = related
    if publisher:
        metadata["publisher"] = publisher
    return {"metadata": metadata, "access": {"record": "public", "files": "public"},
            "files": {"enabled": True}}


def version_digest(body: Mapping[str, Any]) -> str:
    """The digest identifying an InvenioRDM version's metadata (without the fields
    InvenioRDM resets)."""
    stable = copy.deepcopy(dict(body))
    for key in UNVERSIONED:
        stable.get("metadata", {}).pop(key, None)
    return digest(stable)


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, recursively for mappings (lists are replaced)."""
    merged = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def cap_metadata(
    publication: Mapping[str, Any],
    *,
    links: Links,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CAP deposit metadata (without ``$ana_type``, which goes only into the create).

    Without ``Publication.CadiId`` it carries the placeholder :data:`NO_CADI_ID` (a dry run;
    ``steps.publish.common.check_cadi_id`` refuses an upload of it).

    Args:
        publication: The ``Publication`` block of the analysis config.
        links: The Zenodo DOI, HEPData record, REANA workflow and code to link.
        extra: Fields of the experiment's schema to merge in (``--metadata``).
    """
    # CAP's documentations are strings (the schema's items: {"type": "string"}): the URLs,
    # and what each one is in the free-text comment
    documentations: list[tuple[str, str]] = []
    if links.zenodo_doi:
        state = "" if links.zenodo_doi_registered else " (reserved; registered on publication)"
        what = f"Zenodo deposit{state}: workflow, inputs manifest, outputs and provenance"
        documentations.append((f"https://doi.org/{links.zenodo_doi}", what))
    if links.hepdata:
        documentations.append((links.hepdata, "HEPData record: tables and likelihoods"))
    if links.reana:
        documentations.append((links.reana, "REANA workflow run"))
    if links.code:
        documentations.append((links.code, "analysis code (pubflow)"))
    metadata: dict[str, Any] = {
        "general_title": publication["Title"],
        "basic_info": {"cadi_id": publication.get("CadiId") or NO_CADI_ID,
                       "abstract": " ".join(publication["Abstract"].split()),
                       "people_info": [_person(a) for a in publication["Authors"]]},
        "additional_resources": {"keywords": ", ".join(keywords(publication))},
    }
    resources = metadata["additional_resources"]
    if documentations:
        resources["documentations"] = [url for url, _ in documentations]
        resources["comments"] = "Documentation links: " + "; ".join(
            f"{url}: {what}" for url, what in documentations)
    if paper := inspire_url(publication):
        # the schema's publication-v0.0.1: persistent_identifiers are strings
        resources["publications"] = [{"persistent_identifiers": [paper]}]
    return deep_merge(metadata, extra or {})
