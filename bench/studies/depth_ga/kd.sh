#!/bin/bash
# kd.sh RUN NAME SEED: 64/class samples of a DCGAN run (z ~ N(0, I), seed) + XGBoost row.
set -e
cd /work/main
run=$1; name=$2; seed=$3
out=runs/depth_study/samples/${name}_s${seed}
rm -rf $out
nice -n 10 .venv/bin/python bench/studies/depth_ga/study.py sample $run $out $seed 64 > /dev/null 2>&1
r=$(nice -n 10 .venv/bin/python bench/studies/depth_ga/study.py xgb $out $seed 2>/dev/null | tail -1)
echo "{\"name\": \"$name\", \"args\": \"$run\", \"xgb\": $r}" | tee -a runs/depth_study/results.jsonl
