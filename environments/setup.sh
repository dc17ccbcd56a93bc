#!/usr/bin/env bash
# Create (or refresh) pubflow's environments at the repository root:
#   .venv             the analysis: snakemake 9, pyhf, cabinetry, uproot, hepdata tools, pytest
#   .venv-reana       REANA 0.9: reana-client 0.9.6 with the Snakemake it pins (7.32.4), on
#                     Python 3.8 where one is installed, the Python of REANA 0.9's workflow
#                     engine (reana-client's pins, snakemake==7.32.4 and jsonschema<4, would
#                     break the analysis environment)
#   .venv-reana95     REANA 0.95: the reana-client pre-release (`reana-client test`, the
#                     Gherkin steps of reana-commons), on Python 3.12, the 0.95 engine's Python
#   .venv-snakemake8  Snakemake 8.27.1, the version of REANA 0.95's engine, on Python 3.12
# The package lists are pyproject.toml's dependency groups of the same names.
# Idempotent: an environment is rebuilt only when pyproject.toml or its Python changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

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

# python_for X.Y: an interpreter of that version (PATH, then pyenv's versions), else $PY.
python_for() {
  local want=$1 candidate
  for candidate in "python$want" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/"python$want"; do
    if "$candidate" -c 'import sys' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  log "no Python $want found: using $PY for environments meant for $want"
  command -v "$PY"
}

group() {  # the requirements of one dependency group of pyproject.toml, one per line
  "$PY" -c 'import sys, tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"][sys.argv[1]]))' "$1"
}

# pip configs on some machines point at local mirrors that may be absent; keep their noise out.
quiet() { "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

make_env() {  # make_env DIR PYTHON PIP-ARGS...
  local dir=$1 python=$2; shift 2
  local stamp
  stamp="$(sha256sum pyproject.toml | cut -c1-16) $("$python" -c 'import sys; print(sys.version.split()[0])')"
  if [ -f "$dir/.pubflow-stamp" ] && [ "$(cat "$dir/.pubflow-stamp")" = "$stamp" ]; then
    return 0
  fi
  log "creating $dir (Python ${stamp#* })"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  quiet "$dir/bin/python" -m pip install -q --disable-pip-version-check -U pip
  quiet "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "$stamp" > "$dir/.pubflow-stamp"
}

mapfile -t reana < <(group reana)
mapfile -t reana95 < <(group reana95)
mapfile -t snakemake8 < <(group snakemake8)
py38=$(python_for 3.8)
py312=$(python_for 3.12)

make_env .venv "$(command -v "$PY")" -e ".[test]" &
make_env .venv-reana "$py38" "${reana[@]}" &
make_env .venv-reana95 "$py312" --pre "${reana95[@]}" &
make_env .venv-snakemake8 "$py312" "${snakemake8[@]}" &
# --- .venv-zenodo-client: begin ---------------------------------------------------------------
# zenodo-client 0.4.2 (package index), a Zenodo client written by others: it sends the token as
# ?access_token= and licence ids as given. tests/publish/test_third_party_zenodo.py runs it
# against the fake Zenodo. Pinned here, not in pyproject.toml, so the stamp (pyproject.toml's
# hash) does not see the pin: a venv holding another version is rebuilt.
zenodo_client_pin="zenodo-client==0.4.2"
if ! .venv-zenodo-client/bin/python -c 'import sys, importlib.metadata as m; sys.exit(m.version("zenodo-client") != sys.argv[1])' "${zenodo_client_pin#*==}" 2>/dev/null; then
  rm -f .venv-zenodo-client/.pubflow-stamp
fi
make_env .venv-zenodo-client "$(command -v "$PY")" "$zenodo_client_pin" &
# --- .venv-zenodo-client: end -----------------------------------------------------------------
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
[ "$status" = 0 ] || { log "an environment failed to install (see above)"; exit 1; }
log "ready: .venv (analysis), .venv-reana (REANA 0.9), .venv-reana95 (REANA 0.95), .venv-snakemake8"
