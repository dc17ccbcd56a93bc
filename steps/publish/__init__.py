"""publish: a validated result reaches HEPData, Zenodo and CAP without hand work.

``python -m steps.publish {hepdata,zenodo,cap,inveniordm}`` (see ``--help``). The
publishers read only finished, validated files (the gate, :mod:`steps.publish.gate`) and
never import the analysis. Modules, each with one job:

* :mod:`~steps.publish.secrets`: credentials from the environment, redaction everywhere;
* :mod:`~steps.publish.http`: the one HTTP layer (timeouts, bounded retries, TLS on);
* :mod:`~steps.publish.state`: what exists remotely, saved after every change;
* :mod:`~steps.publish.gate`: the validation report and the published files' digests;
* :mod:`~steps.publish.bundle`: the files to send (the workflow as one reproducible archive);
* :mod:`~steps.publish.metadata`, :mod:`~steps.publish.links`: record metadata and links;
* :mod:`~steps.publish.plan`: the request plan a dry run writes;
* :mod:`~steps.publish.buckets`: checked file uploads to Invenio buckets (Zenodo, InvenioRDM, CAP);
* :mod:`~steps.publish.publisher`: what the flows' runs share (the state section, settling a
  pending request, the deposit flow of Zenodo and CAP, and the versioned-record flow Zenodo and
  InvenioRDM share: drafts, a lost create or publish settled, the publish tail);
* :mod:`~steps.publish.hepdata`, :mod:`~steps.publish.zenodo`, :mod:`~steps.publish.cap`:
  the three flows;
* :mod:`~steps.publish.inveniordm`: the Zenodo deposit through InvenioRDM's own REST API
  (drafts, draft files, versions), on any InvenioRDM instance, Zenodo's included;
* :mod:`~steps.publish.common`: shared options, the plan a dry run writes, and the
  run-or-resume loop every publisher's ``main`` calls.
"""
