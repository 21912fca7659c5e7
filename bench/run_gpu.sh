#!/usr/bin/env bash
# Runs the evasion and memory benchmarks on a CUDA machine; the JSON lands in bench/results/.
#
#   bash bench/run_gpu.sh                 # the full run (about 10 minutes on one recent GPU)
#   bash bench/run_gpu.sh --quick         # a smoke run; any argument goes to bench_evasion.py
#
# The venv (bench/.venv-gpu) is made the way the Makefile makes .venv, except for torch, which
# must be a CUDA build here:
#   - if python3 already has a torch that sees a GPU (a prepared image, maybe offline), the venv
#     sees it through --system-site-packages and no torch is installed;
#   - otherwise $TORCH is installed, pinned like the Makefile's (torch==2.13.0: on Linux the
#     PyPI wheel is a CUDA build); set TORCH_INDEX (e.g. https://download.pytorch.org/whl/cu128)
#     to take it from PyTorch's own index instead.
# Offline, point WHEELS at a folder holding the wheels of bastion's and the anchors'
# dependencies that python3 lacks (mlxtend, adversarial-robustness-toolbox, torchattacks, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-bench/.venv-gpu}
TORCH=${TORCH:-torch==2.13.0}
export BASTION_CACHE_DIR=${BASTION_CACHE_DIR:-/tmp/bastion-cache}
export PYTHONUNBUFFERED=1
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
SOURCE=()
if [ -n "${WHEELS:-}" ]; then
  SOURCE=(--no-index --find-links "$WHEELS" --no-build-isolation)
fi

sees_gpu() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

if [ ! -x "$PY" ]; then
  if sees_gpu "$PYTHON"; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
    "${PIP[@]}" install "${SOURCE[@]}" --upgrade pip
    "${PIP[@]}" install "${SOURCE[@]}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH"
  fi
fi
if [ ! -f "$VENV/.bench-installed" ]; then
  "${PIP[@]}" install "${SOURCE[@]}" -e '.[bench]'
  # As in the Makefile: torchattacks without its metadata's CUDA torch and torchvision.
  "${PIP[@]}" install "${SOURCE[@]}" --no-deps torchattacks==3.5.1
  "${PIP[@]}" install "${SOURCE[@]}" scipy tqdm
  touch "$VENV/.bench-installed"
fi
if ! sees_gpu "$PY"; then
  echo "run_gpu.sh: torch in $VENV sees no CUDA device ($("$PY" -c 'import torch; print(torch.__version__)'))" >&2
  exit 1
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
# On a GPU the slow rows fit on all 1000 images; ART's C&W stays on 20 (its loop is numpy on the CPU).
"$PY" bench/bench_evasion.py --device cuda --ensemble-n 1000 --cw-n 1000 "$@"
"$PY" bench/bench_memory.py --device cuda
