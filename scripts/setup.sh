#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine: system packages, then a virtualenv
# with the project and its test tools. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# Debian packages the tests use: Chromium (scrapy-playwright rendering, the live
# page test), Prometheus and the Pushgateway (metrics tests), PostgreSQL (the
# storage, pipeline and command tests run on it too; the tests start their own
# server, Debian's cluster is not used). Playwright cannot download its own
# browser here, so the system Chromium is used.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
# Debian keeps initdb and postgres off PATH, in /usr/lib/postgresql/VERSION/bin
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null \
  || missing+=(postgresql)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
    echo "Installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "Warning: cannot install ${missing[*]} (no apt-get or no root); tests needing them skip." >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ] \
  || [ simulated-site/pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # the tested versions (constraints.txt); setup.py's ranges are what a user may install
  .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
  # the simulated site: its own distribution, never in the crawler's egg
  .venv/bin/pip install -q -c constraints.txt -e ./simulated-site
  touch "$stamp"
fi
# The project's own modules as bytecode, as pip leaves installed packages: where
# PYTHONDONTWRITEBYTECODE is set (CI images, this build machine) every crawl process
# compiled all of them again, 0.3 s of CPU at each start (docs/benchmarks.md)
.venv/bin/python -m compileall -q matter_crawler simulated-site/sitesim
