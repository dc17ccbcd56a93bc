#!/usr/bin/env bash
# Regenerate the hash-pinned lock of every step image from pyproject.toml:
#   environments/analysis/requirements.lock   <- [project] dependencies
#   environments/publish/requirements.lock    <- [dependency-groups] publish
# Run it after changing either list (tests/test_containers.py fails until you do), then rebuild
# the images (bash environments/build-images.sh). Needs PyPI; the resolver (uv) lives in a
# throwaway venv and never enters the project's environments. Resolves for the images' platform:
# CPython 3.11 on x86_64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT

"$PY" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q --disable-pip-version-check "uv==0.13.9" \
  2> >(grep -v "^WARNING: Location 'file:" >&2)

compile() {  # compile OUTPUT UV-ARGS...
  local out=$1; shift
  # uv reads no pip.conf: the lock comes from PyPI alone, as the image builds do.
  UV_NATIVE_TLS=1 "$tools/venv/bin/uv" pip compile --quiet --generate-hashes \
    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --index-url https://pypi.org/simple --no-emit-index-url \
    --custom-compile-command "bash environments/lock.sh" \
    --output-file "$out" "$@"
  printf '[lock] %s: %s packages\n' "$out" "$(grep -c '^[a-zA-Z0-9]' "$out")" >&2
}

compile environments/analysis/requirements.lock pyproject.toml
compile environments/publish/requirements.lock --group pyproject.toml:publish
