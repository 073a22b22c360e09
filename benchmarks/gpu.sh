#!/usr/bin/env bash
# The training-speed benchmark on a CUDA machine, in one call, from a clean clone:
#   bash benchmarks/gpu.sh [DATA_DIR]
# Installs the project (with the CUDA build of torch that pip picks by default) into .venv-gpu,
# prints the GPU, then runs benchmarks/train_speed.py on it. DATA_DIR holds the MNIST files;
# without it the usual search applies ($SEQLSTM_DATA, the cache, then download).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
python -m pip install --quiet -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch; assert torch.cuda.is_available(), 'this torch build sees no CUDA device'; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())"
python benchmarks/train_speed.py --device cuda --repeats 3 --levers \
  ${1:+--data-dir "$1"} --json benchmarks/results/train_speed_gpu.json
