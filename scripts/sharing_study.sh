#!/usr/bin/env bash
# The sharing study (README, "Sharing science"): every variant of configs/variant/ x 3 seeds,
# one Hydra multirun per task. Extra arguments are passed to Hydra, e.g.
#   STUDY=maze bash scripts/sharing_study.sh results_dir=results/reference/sharing_maze
#   STUDY=prefix_sums bash scripts/sharing_study.sh hydra/launcher=joblib hydra.launcher.n_jobs=2
# then: python -m benchmark.report <results_dir>
set -euo pipefail
VARIANTS=${VARIANTS:-feedforward,recurrent,shared_k1,shared_k2,shared_k4,depth_k2,depth_k2_tail,depth_k2_loopreg}
case "${STUDY:-maze}" in
  maze) TASK="task=maze size=train9_test15" ;;
  prefix_sums) TASK="task=prefix_sums size=train32_test128" ;;
  *) echo "STUDY must be maze or prefix_sums, got ${STUDY}." >&2; exit 2 ;;
esac
python -m benchmark --multirun $TASK "+variant=$VARIANTS" "seed=${SEEDS:-0,1,2}" "$@"
