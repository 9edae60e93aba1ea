#!/bin/bash
# ga.sh NAME SEED [--config.x=y ...]: evolve export of configs/evolve_depth.py:tiny + XGBoost row.
set -e
cd /work/main
name=$1; seed=$2; shift 2
out=runs/depth_study/ga/${name}_s${seed}
mkdir -p runs/depth_study/logs
t0=$(date +%s)
nice -n 10 .venv/bin/python evolve.py --config configs/evolve_depth.py:tiny --config.classifier=runs/depth_cls_tiny \
  --config.seed=$seed "$@" --out $out > runs/depth_study/logs/${name}_s${seed}.log 2>&1
t1=$(date +%s)
r=$(nice -n 10 .venv/bin/python bench/studies/depth_ga/study.py xgb $out $seed 2>/dev/null | tail -1)
z=$(.venv/bin/python bench/studies/depth_ga/study.py znorm $out 2>/dev/null | tail -1)
echo "{\"name\": \"$name\", \"args\": \"$*\", \"evolve_s\": $((t1-t0)), \"xgb\": $r, \"z\": $z}" | tee -a runs/depth_study/results.jsonl
