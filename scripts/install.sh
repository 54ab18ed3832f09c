#!/usr/bin/env bash
# Install the pinned dependencies (works offline-from-hubs: only PyPI is needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -r requirements-nodeps.txt
