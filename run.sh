#!/usr/bin/env bash
# The main job. With NVIDIA GPUs: the 8xH100 FineWeb track on all of them. Without: the CPU
# Shakespeare track, saving a checkpoint (logs/<uuid>_step<N>.pt) and printing a sample of text from
# it. Extra arguments pass through to train_gpt.py (e.g. --num_iterations=50). It ends with the
# verdict: the track's target reached or not.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p logs
python -c "import torch, numpy, tiktoken, huggingface_hub" 2>/dev/null || python -m pip install -q -r requirements.txt 2>logs/pip.err \
  || { echo "run.sh: pip could not install requirements.txt ($(tail -n 1 logs/pip.err)); is PyPI reachable?" >&2; exit 1; }

gpus=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || true)
if [ "${gpus:-0}" -gt 0 ] && python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  # 1390 steps * 524,288 train tokens = 729M: 8 train shards of 100M tokens (190 steps each)
  python data/cached_fineweb10B.py 8
  torchrun --standalone --nproc_per_node="$gpus" train_gpt.py "$@"
else
  python data/shakespeare.py
  python train_gpt.py --track=cpu_shakespeare --save_checkpoint=true "$@"
  log=$(ls -t logs/*.txt | sed -n 1p)
  checkpoint=$(ls -t "${log%.txt}"_step*.pt 2>/dev/null | sed -n 1p || true)  # this run's, if any
  if [ -n "$checkpoint" ]; then
    echo "A sample of the model just trained (python tools/sample.py $checkpoint --tokens=80):"
    python tools/sample.py "$checkpoint" --tokens=80
  fi
fi
python tools/verdict.py "$(ls -t logs/*.txt | sed -n 1p)"  # the run's final val loss against its target
