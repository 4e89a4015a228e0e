#!/usr/bin/env bash
# Builds model_gate.wasm from app.py with componentize-py (from PyPI; it bundles CPython and
# works offline once installed). Needs `pip install componentize-py==0.25.1`
# (scripts/setup installs it into <repo>/.venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
py=${COMPONENTIZE_PY:-$root/.venv/bin/componentize-py}
cd "$here"
"$py" -d "$root/wit" -w preprocess-plugin componentize app -o model_gate.wasm
