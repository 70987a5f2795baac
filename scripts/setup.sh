#!/usr/bin/env bash
# Creates the project's virtual environment with every extra and the test tools.
# System packages (Chromium for the browser tests, FreeMono for FigStep rendering) come from Debian
# and are installed when running as root and missing.
set -euo pipefail
PY=${1:-python3}
VENV=${2:-.venv}

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
[ -f /usr/share/fonts/truetype/freefont/FreeMonoBold.ttf ] || need_apt+=(fonts-freefont-ttf)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: warning: missing ${need_apt[*]} (install them with apt-get); browser tests will be skipped" >&2
  fi
fi

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# Pin torch first: the CPU build; a bare 'torch' would pull a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "setup: ready in $VENV"
