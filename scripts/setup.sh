#!/usr/bin/env bash
# Sets up .venv with everything weightgate and its tests need. Safe to run again.
# torch goes in first: `pip install torch==2.13.0` takes the CPU build that lies on this
# machine's disk; on a GPU box the same command installs PyPI's CUDA build. A torch that is
# already importable (e.g. a CUDA build you installed) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${WEIGHTGATE_TORCH:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing $TORCH_SPEC"
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
fi
echo "setup: installing weightgate and its dependencies"
# The tracking extras too: the tests read mirrored runs back with MLflow's and TensorBoard's own readers.
.venv/bin/python -m pip install --quiet -e ".[dev,mlflow,tensorboard]"

# The TUI tests drive the real app in a real terminal; tmux provides it.
if ! command -v tmux >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing tmux"
    (apt-get update -qq && apt-get install -y -qq tmux >/dev/null) || echo "setup: could not install tmux; the tmux tests will be skipped"
  else
    echo "setup: tmux not found; install it to run the real-terminal tests"
  fi
fi
.venv/bin/python -c "import torch, weightgate.core, weightgate.tui; print('setup: ok, torch', torch.__version__)"
