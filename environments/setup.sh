#!/usr/bin/env bash
# Create (or refresh) pubflow's two environments at the repository root:
#   .venv        the analysis: snakemake 9, pyhf, cabinetry, uproot, hepdata tools, pytest
#   .venv-reana  reana-client 0.9 on its own (it pins snakemake==7.32.4 and jsonschema<4;
#                sharing one environment drags pyhf back to 0.6.3, which breaks on numpy 2)
# Idempotent: an environment is rebuilt only when pyproject.toml changed since it was made.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=$(sha256sum pyproject.toml | cut -c1-16)

log() { printf '[setup] %s\n' "$*" >&2; }

# hepdata_lib makes figure thumbnails with ImageMagick's `convert`.
if ! convert -version 2>/dev/null | grep -q ImageMagick; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ImageMagick (needed by hepdata_lib for figure thumbnails)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends imagemagick >/dev/null
  else
    log "ImageMagick's 'convert' is missing: install it (e.g. 'sudo apt-get install imagemagick') and re-run"
    exit 1
  fi
fi

# pip configs on some machines point at local mirrors that may be absent; keep their noise out.
quiet() { "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

make_env() {  # make_env DIR PIP-ARGS...
  local dir=$1; shift
  if [ -f "$dir/.pubflow-stamp" ] && [ "$(cat "$dir/.pubflow-stamp")" = "$stamp" ]; then
    return 0
  fi
  log "creating $dir"
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  quiet "$dir/bin/python" -m pip install -q --disable-pip-version-check -U "pip>=25.1"
  quiet "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "$stamp" > "$dir/.pubflow-stamp"
}

make_env .venv -e ".[test]"
make_env .venv-reana --group reana
log "ready: .venv (analysis) and .venv-reana (reana-client)"
