#!/usr/bin/env bash
# Prepare the carry folders for bench/gpu_check.sh. Run HERE (the development machine),
# from anywhere, before a device run:
#
#   bash bench/gpu_wheels.sh            # NVLABS_SRC=/tmp/nvlabs by default
#
# It fills two git-ignored folders (.gitignore), which the device `run` names in `carry`:
#
#   bench/.gpu_pkgs/site/              evosax, ml_collections, dotmap, clu: pure-Python packages jaxgen's
#                                      benches import that the device image ('cuda', python3 3.12, see
#                                      /work/.library/device/KINDS.md) lacks; unpacked wheels with their
#                                      .dist-info, put FIRST on PYTHONPATH by gpu_check.sh (nothing is
#                                      pip-installed there: no index, and nothing to install)
#   bench/.gpu_pkgs/fallback/absl-py/  absl: the image has absl-py, so gpu_check.sh adds this folder
#                                      (LAST) only where `import absl` fails
#   bench/.gpu_pkgs/fixtures/          fid_inception_weights.npz: bench/inception_speed.py's default weights
#                                      live in ../shared/fixtures, which does not travel
#   bench/.nvlabs/                     NVIDIA's stylegan2-ada-pytorch (dnnlib, torch_utils, training,
#                                      LICENSE.txt) copied from $NVLABS_SRC; bench/nvlabs_gpu_speed.py
#                                      imports it from there. Never committed (NVIDIA's license): carried only.
#
# What works here (checked 2026-12-02): `pip download` reaches pypi.org (pip's config also lists local
# file indexes under /opt/pypi), so method 1 is used: download the pinned wheels (versions read from
# .venv, which matches requirements.txt) for cp312/manylinux x86-64 with --no-deps --only-binary=:all:
# and unzip them. Every one is py3-none-any. Where no index answers, method 2 copies the installed
# package folders and their .dist-info from .venv's site-packages instead (pure Python, so 3.11 here
# -> 3.12 there is fine; __pycache__ is left out). GPU_PKGS_METHOD=copy forces method 2.
# `pip wheel --no-index` cannot rebuild a wheel from an installed package, so it is not an option.
#
# GPU_PKGS_EXTRA="flax==0.12.8 optax==0.2.8" (say) also carries those pins into site/ (only if the
# image's own versions turn out incompatible; they then shadow the image's copies).
# The folders must stay well under the 64 MiB carry limit (the working tree counts too): the script
# prints their sizes and fails above 48 MiB.
set -u -o pipefail
cd "$(dirname "$0")/.."
VENV_PY=${VENV_PY:-.venv/bin/python}
NVLABS_SRC=${NVLABS_SRC:-/tmp/nvlabs}
DEST=bench/.gpu_pkgs
SITE_PKGS=(evosax ml-collections dotmap clu)   # distribution names
FALLBACK_PKGS=(absl-py)

rm -rf "$DEST" && mkdir -p "$DEST/site" "$DEST/fallback" "$DEST/fixtures" "$DEST/.dl" || exit 1

version() { "$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

fetch_one() {  # fetch_one DIST TARGET_DIR: method 1 (download + unzip), else method 2 (copy from .venv)
  local dist=$1 target=$2 ver whl
  ver=$(version "$dist") || { echo "!! $dist is not installed in $VENV_PY"; return 1; }
  if [ "${GPU_PKGS_METHOD:-download}" != copy ] && timeout 120 "$VENV_PY" -m pip download -q --no-deps \
       --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DEST/.dl" "$dist==$ver" 2>/dev/null; then
    whl=$(ls "$DEST"/.dl/*.whl | grep -i "/${dist//-/_}-$ver-" | head -1)
    "$VENV_PY" -m zipfile -e "$whl" "$target" && echo "   $dist $ver: downloaded $(basename "$whl")" && return 0
  fi
  # Method 2: copy the installed package (top-level names from the .dist-info's RECORD) and its .dist-info.
  "$VENV_PY" - "$dist" "$target" <<'EOF' || return 1
import importlib.metadata as m, pathlib, shutil, sys
d = m.distribution(sys.argv[1]); root = pathlib.Path(d.locate_file("")); dst = pathlib.Path(sys.argv[2])
tops = {pathlib.Path(f).parts[0] for f in d.files or [] if not str(f).startswith("..")}
for t in sorted(tops):
    src = root / t
    if src.is_dir():
        shutil.copytree(src, dst / t, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    elif src.is_file() and src.suffix == ".py":
        shutil.copy2(src, dst / t)
print(f"   {sys.argv[1]} {d.version}: copied {', '.join(sorted(tops))} from {root}")
EOF
}

echo "== packages into $DEST/site (PYTHONPATH first on the device)"
for p in "${SITE_PKGS[@]}"; do fetch_one "$p" "$DEST/site" || echo "!! $p: not collected"; done
for spec in ${GPU_PKGS_EXTRA:-}; do
  timeout 300 "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$DEST/.dl/extra" "$spec" \
    && for w in "$DEST"/.dl/extra/*.whl; do "$VENV_PY" -m zipfile -e "$w" "$DEST/site"; done \
    && echo "   extra $spec: downloaded" || echo "!! extra $spec: not collected"
  rm -rf "$DEST/.dl/extra"
done
echo "== fallback packages (added only where the image cannot import them)"
for p in "${FALLBACK_PKGS[@]}"; do
  mkdir -p "$DEST/fallback/$p" && fetch_one "$p" "$DEST/fallback/$p" || echo "!! $p: not collected"
done
rm -rf "$DEST/.dl"
find "$DEST" -name __pycache__ -type d -prune -exec rm -rf {} +
so=$(find "$DEST" -name '*.so' | head -3)
[ -z "$so" ] || echo "!! compiled extensions found (built for this machine's python, may not load there): $so"

echo "== FID Inception fixture weights"
cp ../shared/fixtures/fid_inception_weights.npz "$DEST/fixtures/" 2>/dev/null \
  || cp /work/shared/fixtures/fid_inception_weights.npz "$DEST/fixtures/" || echo "!! fixture weights not found"

echo "== NVIDIA stylegan2-ada-pytorch from $NVLABS_SRC into bench/.nvlabs"
rm -rf bench/.nvlabs
if [ -d "$NVLABS_SRC/training" ] && [ -d "$NVLABS_SRC/torch_utils" ]; then
  mkdir -p bench/.nvlabs && cp -r "$NVLABS_SRC"/{dnnlib,torch_utils,training} bench/.nvlabs/ \
    && { cp "$NVLABS_SRC"/LICENSE.txt bench/.nvlabs/ 2>/dev/null; true; } \
    && find bench/.nvlabs -name __pycache__ -type d -prune -exec rm -rf {} +
  echo "   copied: $(ls bench/.nvlabs | tr '\n' ' ')"
else
  echo "!! $NVLABS_SRC is not a stylegan2-ada-pytorch checkout: the nvlabs part will report 'no checkout'"
fi

echo "== sizes"
du -sh "$DEST"/* bench/.nvlabs 2>/dev/null
tree_kib=$(git ls-files -co --exclude-standard -z | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carry_kib=$(du -sk "$DEST" bench/.nvlabs 2>/dev/null | awk '{s+=$1} END {print s+0}')
echo "carry folders: $((carry_kib / 1024)) MiB ($carry_kib KiB); working tree that travels: $((tree_kib / 1024)) MiB;" \
     "together $(((carry_kib + tree_kib) / 1024)) MiB of the 64 MiB limit"
[ "$carry_kib" -lt $((48 * 1024)) ] || { echo "!! carry folders over 48 MiB"; exit 1; }
echo "modules in site/: $(ls "$DEST/site" | grep -v dist-info | tr '\n' ' ')"
