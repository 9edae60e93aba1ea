#!/usr/bin/env bash
# GPU check of issue 13 (item 6), for a session that is lent a device machine (one NVIDIA H200,
# 15 minutes of device time in all, no package index and no internet there).
#
# What it measures (bench/gpu_check.py runs the parts, each under its own timeout, inside one
# overall budget of GPU_CHECK_BUDGET seconds, 460 by default, so the whole command ends in
# about 8 minutes; a part that fails or hangs is reported and the next one runs; run order =
# priority: info, fp32, nvlabs, bf16, ga, inception, fp16, fp32_highest):
#   1. jaxgen StyleGAN2 training step at 256 px, paper widths, batch 32, 16 timed steps
#      (bench/train_speed.py), fp32 first; then --precision bf16 / fp16 only if
#      `bench/train_speed.py --help` lists --precision, else the report says
#      "mixed precision: not available in this commit". Reported against the target
#      (< 6 s/kimg on one H200) and NVIDIA's published single-GPU 256 px figures
#      (A100 12.53 s/kimg, V100 20.84). Last, if time is left: fp32 again with
#      JAX_DEFAULT_MATMUL_PRECISION=highest (no TF32, like NVIDIA's allow_tf32=False).
#   2. NVIDIA's stylegan2-ada-pytorch iteration, same model and phases, on cuda
#      (bench/nvlabs_gpu_speed.py; variants fp32, tf32, mixed = NVIDIA's fp16 default), and
#      whether NVIDIA's custom CUDA ops (bias_act, upfirdn2d) compiled or fell back to the
#      reference path. Their nvcc build runs in the background while part 1 compiles.
#   3. GA evaluations/s (bench/evolve_speed.py --res 64 --pop 512 --generations 20 --reps 2)
#   4. Inception images/s (bench/inception_speed.py --n 512 --batch 128 --sizes 299 64 --reps 3)
# Results: $OUT/gpu_results.md and $OUT/gpu_results.json (rewritten after every part, so a
# killed run still returns what finished), $OUT/gpu_check.log (every line); the .md is
# printed at the end.
#
# Before the device run, HERE: `bash bench/gpu_wheels.sh` fills the git-ignored carry folders
#   bench/.gpu_pkgs  pure-Python packages the image lacks (evosax, ml_collections, dotmap, clu;
#                    absl as a fallback) + the FID fixture weights (7.9 MiB)
#   bench/.nvlabs    NVIDIA's stylegan2-ada-pytorch code from /tmp/nvlabs (0.3 MiB; never committed)
# and checks their size. Nothing is installed on the device: this script puts
# bench/.gpu_pkgs/site first on PYTHONPATH (and bench/.gpu_pkgs/fallback/<dist> where the image
# cannot import that module). Check it here first with `bash bench/gpu_check.sh --dry-run`.
#
# The device `run` (one call, then give_back):
#   command:   OUT=$OUT bash bench/gpu_check.sh
#   carry:     ["bench/.gpu_pkgs", "bench/.nvlabs"]
#   timeout_s: 540
# A rerun of some parts only (with the time that is left), e.g.:
#   GPU_CHECK_PARTS=nvlabs,ga GPU_CHECK_BUDGET=200 bash bench/gpu_check.sh     (timeout_s 260)
#
# Modes and knobs:
#   --dry-run (or GPU_CHECK_DRY=1)  every part on the CPU at the smallest sizes (res 32, cpu
#                                   widths, batch 2, 2 steps, no augmentation; nvlabs on cpu), niced;
#                                   checks the plumbing here (fp32_highest is left out: same path as fp32)
#   GPU_CHECK_BUDGET  overall seconds (460; dry run 2400)    GPU_CHECK_PARTS  comma list of parts
#   GPU_CHECK_PYTHON  interpreter (python3 there; .venv/bin/python in a dry run where it exists)
#   NVLABS_DIR        stylegan2-ada-pytorch checkout (bench/.nvlabs, else /tmp/nvlabs)
set -u
cd "$(dirname "$0")/.." || exit 1
DRY=${GPU_CHECK_DRY:-0}
for a in "$@"; do
  case $a in --dry-run|--dry_run) DRY=1 ;; *) echo "unknown argument $a (only --dry-run)"; exit 2 ;; esac
done
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then PY=$GPU_CHECK_PYTHON
elif [ "$DRY" = 1 ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
PY=$(command -v "$PY" || echo "$PY")

PKGS=$PWD/bench/.gpu_pkgs
if [ -d "$PKGS/site" ]; then
  export PYTHONPATH=$PKGS/site${PYTHONPATH:+:$PYTHONPATH}
else
  echo "!! $PKGS/site is missing: run bench/gpu_wheels.sh here and carry bench/.gpu_pkgs"
fi
for d in "$PKGS"/fallback/*/; do
  [ -d "$d" ] || continue
  for m in $(ls "$d" | grep -v -e '\.dist-info$' -e '\.data$' | sed 's/\.py$//'); do
    if ! timeout 60 "$PY" -c "import $m" 2>/dev/null; then
      echo "fallback: the image cannot import $m: adding ${d%/} to PYTHONPATH"
      export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}${d%/}
    fi
  done
done

echo "== gpu_check $( [ "$DRY" = 1 ] && echo DRY RUN ) $(date -Is) on $(uname -n), $(nproc) CPUs, python $PY"
echo "PYTHONPATH=${PYTHONPATH:-}"
if command -v nvidia-smi >/dev/null; then
  timeout 30 nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt" || echo "!! nvidia-smi failed or timed out"
else
  echo "no nvidia-smi on this machine"
fi

ARGS=(--out "$OUT")
BUDGET=${GPU_CHECK_BUDGET:-460}
if [ "$DRY" = 1 ]; then
  ARGS+=(--dry_run)
  BUDGET=${GPU_CHECK_BUDGET:-2400}
  RUN=(nice -n 19 timeout -k 10 $((BUDGET + 60)))
else
  RUN=(timeout -k 10 $((BUDGET + 60)))
fi
"${RUN[@]}" "$PY" bench/gpu_check.py "${ARGS[@]}" --budget "$BUDGET"
rc=$?
[ $rc = 124 ] && echo "!! bench/gpu_check.py itself ran past its outer timeout"

echo
echo "================================================================ $OUT/gpu_results.md"
if [ -s "$OUT/gpu_results.md" ]; then
  cat "$OUT/gpu_results.md"
else
  printf '# GPU check\n\nbench/gpu_check.py wrote no report (rc %s); see gpu_check.log / the output above.\n' "$rc" \
    | tee "$OUT/gpu_results.md"
fi
exit $rc
