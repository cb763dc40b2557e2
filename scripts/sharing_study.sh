#!/usr/bin/env bash
# The sharing study (README, "Sharing science"): every variant of configs/variant/ x 3 seeds,
# one Hydra multirun per task. Extra arguments are passed to Hydra, e.g.
#   STUDY=maze bash scripts/sharing_study.sh results_dir=results/reference/sharing_maze
#   STUDY=prefix_sums bash scripts/sharing_study.sh hydra/launcher=joblib hydra.launcher.n_jobs=2
# then: python -m benchmark.report <results_dir>
set -euo pipefail
VARIANTS=${VARIANTS:-feedforward,recurrent,shared_k1,shared_k2,shared_k4,depth_k2,depth_k2_tail,depth_k2_loopreg}
# Every training setting is spelt out, so later changes of the defaults do not change the study.
# The budget is about a minute and a half of one CPU core per run.
case "${STUDY:-maze}" in
  maze) TASK="task=maze size=train9_test15 size.n_train=10000 size.n_test=1000 train=cpu train.epochs=3 train.batch_size=64
              train.lr=0.002 train.alpha=1.0 train.iters=20 train.detach_extra=0 train.warmup_steps=100 eval.iters=60" ;;
  prefix_sums) TASK="task=prefix_sums size=train32_test128 size.n_train=10000 size.n_test=1000 train=prefix_sums train.epochs=5
              train.batch_size=100 train.lr=0.002 train.alpha=1.0 train.iters=30 train.detach_extra=0 train.warmup_steps=100
              eval=prefix_sums eval.iters=128" ;;
  *) echo "STUDY must be maze or prefix_sums, got ${STUDY}." >&2; exit 2 ;;
esac
python -m benchmark --multirun $TASK "+variant=$VARIANTS" "seed=${SEEDS:-0,1,2}" "$@"
