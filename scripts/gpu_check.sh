#!/usr/bin/env bash
# One prepared GPU session: the CUDA test, the main command on the GPU, and the sharing study
# (the same multirun commands as on the CPU, run in parallel processes on one GPU).
# Usage on a GPU machine whose python has torch: OUT=<dir> bash scripts/gpu_check.sh
# (missing pure-Python packages may be given as wheels in .whl/).
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
CACHE=/tmp/algoreason-cache
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  echo "== CUDA tests"; python3 -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q 2>&1 | tail -3
  echo "== main command on the GPU"
  /usr/bin/time -f "main command wall %e s" python3 -m benchmark task=maze size=train9_test15 results_dir=/tmp/res/main \
      cache_dir=$CACHE progress=false 2>&1 | tail -12
} 2>&1 | tee "$OUT/log.txt"
tar czf "$OUT/main.tgz" --exclude=model.pt -C /tmp/res main
for task in maze prefix_sums; do
  echo "== sharing study: $task" | tee -a "$OUT/log.txt"
  STUDY=$task bash scripts/sharing_study.sh results_dir=/tmp/res/sharing_$task cache_dir=$CACHE progress=false \
      hydra/launcher=joblib hydra.launcher.n_jobs=${N_JOBS:-8} > "$OUT/study_$task.log" 2>&1
  echo "exit $?" | tee -a "$OUT/log.txt"
  tar czf "$OUT/sharing_$task.tgz" --exclude=model.pt -C /tmp/res "sharing_$task"
done
