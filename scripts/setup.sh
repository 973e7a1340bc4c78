#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages when missing, then a venv with susik installed.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(texlive-latex-base texlive-latex-recommended texlive-fonts-recommended dvipng fonts-nanum
                 chromium chromium-driver postgresql)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.susik-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # The CPU wheel of torch lies on disk; pin it first so nothing pulls a CUDA build.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[train,dev]"
  touch "$stamp"
fi
if [ -f package.json ] && [ ! -d node_modules ]; then
  npm ci --silent --no-audit --no-fund 2>/dev/null || npm install --silent --no-audit --no-fund
fi
echo "setup: ready"
