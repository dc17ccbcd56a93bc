"""The fake services are strict: they refuse what the real ones refuse, as the real ones do."""

from __future__ import annotations

import requests

from .conftest import CAP_TOKEN, HEPDATA_EMAIL, HEPDATA_PASSWORD, ZENODO_TOKEN

GOOD = {"upload_type": "dataset", "title": "t", "creators": [{"name": "Doe, Jane"}],
        "description": "d", "access_right": "open", "license": "cc0-1.0"}


def z(zenodo, method, path, token=ZENODO_TOKEN, **kw):
    url = path if path.startswith("http") else f"{zenodo.url}/api/{path}"
    return requests.request(method, url, headers={"Authorization": f"Bearer {token}"},
                            timeout=5, **kw)


def test_zenodo_refuses_a_bad_token_and_changes_to_a_published_deposition(zenodo):
    """A bad token leaves the request anonymous: 403 (the new-version and validation
    behaviours are in test_zenodo_service.py)."""
    r = z(zenodo, "GET", "deposit/depositions", token="nope")
    assert r.status_code == 403 and r.json()["status"] == 403 and r.json()["message"]
    dep = z(zenodo, "POST", "deposit/depositions", json={"metadata": GOOD}).json()
    put = z(zenodo, "PUT", f"{dep['links']['bucket']}/a.txt", data=b"abc")
    assert put.status_code == 201 and put.json()["checksum"] == \
        "md5:900150983cd24fb0d6963f7d28e17f72"
    assert z(zenodo, "POST", dep["links"]["publish"]).status_code == 202
    assert z(zenodo, "PUT", f"deposit/depositions/{dep['id']}",
             json={"metadata": GOOD}).status_code == 404  # no draft any more
    assert z(zenodo, "PUT", f"{dep['links']['bucket']}/b.txt", data=b"x").status_code == 403
    assert z(zenodo, "POST", dep["links"]["publish"]).status_code == 404


def test_hepdata_refuses_bad_credentials_and_files(hepdata):
    url = f"{hepdata.url}/record/cli_upload"
    archive = {"hep_archive": ("submission.tar.gz", b"x")}
    form = {"email": HEPDATA_EMAIL, "pswd": HEPDATA_PASSWORD, "sandbox": "True"}
    assert requests.post(url, data={"pswd": "p"}, files=archive, timeout=5).status_code == 400
    r = requests.post(url, data={**form, "pswd": "wrong"}, files=archive, timeout=5)
    assert r.status_code == 403 and r.json()["message"] == "Wrong password, please try again."
    r = requests.post(url, data={**form, "email": "who@x.org"}, files=archive, timeout=5)
    assert r.status_code == 404
    r = requests.post(url, data=form, files={"hep_archive": ("s.txt", b"x")}, timeout=5)
    assert r.status_code == 400
    r = requests.post(url, data={**form, "sandbox": "False", "recid": "1"}, files=archive,
                      timeout=5)
    assert r.status_code == 403  # has_upload_permissions fails first (views.py, cli_upload)
    ok = requests.post(url, data=form, files=archive, timeout=5)
    assert ok.status_code == 200 and "/record/sandbox/" in ok.json()["url"]


def test_cap_is_strict(cap):
    def c(method, path, token=CAP_TOKEN, **kw):
        url = path if path.startswith("http") else f"{cap.url}/api/{path}"
        return requests.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                timeout=5, **kw)

    assert c("GET", "me", token="nope").status_code == 401
    assert c("POST", "deposits/", json={"$ana_type": "lhcb"}).status_code == 400
    dep = c("POST", "deposits/", json={"$ana_type": "cms-analysis"}).json()
    patch = [{"op": "add", "path": "/basic_info", "value": {"abstract": "a"}}]
    assert c("PATCH", f"deposits/{dep['id']}", json=patch).status_code == 415

    def json_patch(ops):
        return requests.patch(f"{cap.url}/api/deposits/{dep['id']}", json=ops, timeout=5,
                              headers={"Authorization": f"Bearer {CAP_TOKEN}",
                                       "Content-Type": "application/json-patch+json"})

    assert json_patch(patch).status_code == 200  # a draft may lack required fields
    r = c("POST", dep["links"]["publish"])  # a publication may not (CAP: 422)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == ["basic_info", "cadi_id"]
    assert json_patch([{"op": "add", "path": "/basic_info/cadi_id",
                        "value": "SMP-10-002"}]).status_code == 200
    assert c("POST", dep["links"]["publish"]).status_code == 202
    assert c("PUT", f"{dep['links']['bucket']}/f", data=b"x").status_code == 403
    assert c("POST", dep["links"]["publish"]).status_code == 403
    assert c("POST", dep["links"]["edit"]).status_code == 201
