#!/bin/sh
# The bench's own set-up (never needed by `make test`): wrk from Debian for HTTP load,
# with --profile: py-spy, pyinstrument and yappi from PyPI for `python -m bench.profile` and
# `python -m bench.engine_profile --yappi`.
set -eu
if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk (apt-get)" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
if [ "${1:-}" = "--profile" ]; then
  PYTHON="${PYTHON:-$(dirname "$0")/../.venv/bin/python}"
  if ! "$PYTHON" -c "import pyinstrument, yappi" 2>/dev/null || [ ! -x "$(dirname "$PYTHON")/py-spy" ]; then
    "$PYTHON" -m pip install --disable-pip-version-check -q py-spy pyinstrument yappi
  fi
fi
