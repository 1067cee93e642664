#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what it needs (a venv, the pinned
# requirements, Debian's Chromium and ffmpeg for the browser tests), then runs pytest offline.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-llm.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-ray.txt

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/ffprobe ]; then
  packages="chromium ffmpeg"  # ffprobe checks the recordings the browser tests download
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  fi
fi

export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest "$@"
