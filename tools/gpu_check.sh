#!/usr/bin/env bash
# The prepared GPU check, for the first session lent a GPU (one of >= 24 GB; 8 minutes at most):
#   bash tools/gpu_check.sh
# 1. tests/test_cuda.py: the CUDA path (FlexAttention over the BlockMask) against the CPU path
#    (attention written out over the same mask): the loss and every parameter's gradient;
# 2. in the same file, 30 steps of the full FineWeb configuration on synthetic shards, sized to this
#    GPU as train_gpt.py sizes it: it prints ms/step, peak memory against memory_estimate, and MFU.
# Nothing is downloaded: it runs with the machine's own python and torch.
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
timeout 480 python -m pytest -x -q -s -p no:cacheprovider tests/test_cuda.py
status=$?
[ "$status" -eq 124 ] && echo "gpu_check: stopped after 480 s"
exit "$status"
