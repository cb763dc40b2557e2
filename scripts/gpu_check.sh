#!/usr/bin/env bash
# One prepared GPU session, for when a GPU is lent for a few minutes (issue 11): the gpu-marked
# tests, the bench table on CUDA, the CIFAR throughput of WRN-28-10 / SWRN-28-10-1, and a few
# hundred steps of train=paper on mazes and on prefix sums (samples/s and peak memory are in
# their metrics.jsonl). Each step has its own time limit, so one that hangs costs only its own
# figures; the whole script stays under 10 minutes.
#
#   bash scripts/gpu_check.sh OUT_DIR
#
# OUT_DIR receives log.txt (every step's output), bench_cuda.json, cifar_throughput.json and
# runs.tar.gz (the two paper-scale run directories, weights left out).
set -u
out=${1:?usage: bash scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out"
log="$out/log.txt"
export PYTHONUNBUFFERED=1
py=$(command -v python3 || command -v python)

step() {  # step NAME SECONDS COMMAND...: run COMMAND with a time limit, its output appended to the log
    local name=$1 limit=$2
    shift 2
    echo "== $name: start $(date +%T), limit ${limit}s" | tee -a "$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "== $name: rc $? at $(date +%T)" | tee -a "$log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$log" 2>&1
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" >>"$log" 2>&1

step gpu_tests 150 "$py" -m pytest -m gpu -p no:cacheprovider -rA
step bench 200 "$py" -m benchmark.bench --device cuda --no-compile --repeats 3 --out "$out/bench_cuda.json"
step cifar 60 "$py" -m benchmark.devtools.gpu_cifar_throughput --steps 50 --warmup 10 --out "$out/cifar_throughput.json"
# One epoch of the 50,000 mazes at batch 128 (390 steps); the warm-up shortened to 100 steps so
# that the short schedule reaches its peak learning rate.
step paper_maze 110 "$py" -m benchmark task=maze train=paper train.epochs=1 train.warmup_steps=100 train.log_every=50 \
    device=cuda progress=false results_dir="$out/runs" run_id=paper_maze
step paper_prefix_sums 60 "$py" -m benchmark task=prefix_sums train=paper train.epochs=3 train.warmup_steps=100 \
    train.log_every=50 device=cuda progress=false results_dir="$out/runs" run_id=paper_prefix_sums
tar -czf "$out/runs.tar.gz" --exclude='*.pt' -C "$out" runs && rm -rf "$out/runs"
