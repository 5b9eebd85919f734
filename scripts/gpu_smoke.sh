#!/usr/bin/env bash
# The tiny-model journey on the GPU, end to end, with one pass/fail table (scripts/gpu_smoke.py).
# Without CUDA it says so and exits 0, running nothing. Usage: scripts/gpu_smoke.sh [--device cuda:N]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${WEIGHTGATE_PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/scripts/gpu_smoke.py" "$@"
