"""Speed of the StyleGAN2-ADA training step (all four phases, ADA on) per resolution.

  python bench/train_speed.py                     # 32, 64, 256 px on whatever device JAX has
  python bench/train_speed.py --res 64 --batch 16 --steps 20 --record

Times steady-state iterations: step 0 (which compiles) is excluded, then steps
1..N are timed; path length runs every 4th step and R1 every 16th, so N=16
covers one whole regularisation cycle (smaller N over-weights the cheap steps,
and the table says which N was used). Prints a Markdown table; --record
appends it to bench/RESULTS.md with the command line.

--nvlabs DIR also times NVIDIA's stylegan2-ada-pytorch iteration (same sizes, c_dim 4,
ADA bgc at p=0.3, the same lazy-regularisation cycle; torch on 2 threads) from a
checkout the user points to, with ../shared/tools/nvlabs_step_speed.py (or --nvlabs-tool),
right after each jaxgen row, and adds its ms/step and the speed ratio (NVIDIA ms / jaxgen ms:
above 1 means jaxgen is faster). NVIDIA's code is never copied into this project.

Widths: --preset paper uses NVIDIA's 'auto' widths for each resolution (what a
GPU run uses); --preset cpu uses the narrow widths of the CPU demo configs.

--precision bf16|fp16 computes the 4 highest resolutions of G and D in that dtype with
float32 parameters, as NVIDIA's num_fp16_res=4; fp16 with conv_clamp 256 and the
trainer's automatic loss scale (1024). On a CPU these are emulated and slower than fp32.
"""
import argparse
import datetime
import pathlib
import platform
import re
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxgen.stylegan2 import networks, state as state_lib  # noqa: E402
from jaxgen.stylegan2.loss import LossConfig  # noqa: E402
from jaxgen.stylegan2.step import StepConfig, lazy_phases, make_train_step  # noqa: E402
from jaxgen.stylegan2.train import AUTO_FP16_LOSS_SCALE  # noqa: E402
from jaxgen.utils.xla_options import jit_train_step  # noqa: E402

# Channel widths: 'paper' = NVIDIA's auto config (fmaps 0.5 below 512 px, z/w 512);
# 'cpu' = the narrow widths of configs/acne.py:tiny (64 channels at most).
PRESETS = {"paper": dict(channel_base=16384, channel_max=512, z=512),
           "cpu": dict(channel_base=2048, channel_max=64, z=64)}
# --precision -> (G/D kwargs, loss scale): NVIDIA's mixed precision (num_fp16_res=4, conv_clamp=256).
PRECISIONS = {"fp32": (dict(), 1.0),
              "bf16": (dict(dtype="bfloat16", num_lowp_res=4), 1.0),
              "fp16": (dict(dtype="float16", num_lowp_res=4, conv_clamp=256.0), AUTO_FP16_LOSS_SCALE)}


def bench(res: int, batch: int, steps: int, augment: str, preset: str, precision: str = "fp32"):
    p = PRESETS[preset]
    lowp, scale = PRECISIONS[precision]
    common = dict(img_resolution=res, img_channels=3, c_dim=4, channel_base=p["channel_base"],
                  channel_max=p["channel_max"], **lowp)
    G, D = networks.build(dict(common, z_dim=p["z"], w_dim=p["z"], mapping_layers=2), common)
    g_vars, d_vars = networks.init_variables(G, D, jax.random.key(0))
    g_tx = state_lib.make_optimizer(state_lib.OptConfig(reg_interval=4))
    d_tx = state_lib.make_optimizer(state_lib.OptConfig(reg_interval=16))
    st = state_lib.init_state(g_vars, d_vars, g_tx, d_tx, ada_p=0.3)
    cfg = StepConfig(batch_size=batch, loss=LossConfig(r1_gamma=1.0), augment=augment, loss_scale=scale)
    step = jit_train_step(make_train_step(cfg, G, D, g_tx, d_tx), donate_argnums=0,
                          static_argnames="regs")
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, [batch, res, res, 3]).astype(np.float32)
    c = np.eye(4, dtype=np.float32)[rng.integers(0, 4, batch)]
    key = jax.random.key(1)
    t0 = time.perf_counter()
    for i in range(5):  # compile the three programs (both regularisers, none, Greg only) untimed
        st, m = step(st, real, c, key, regs=lazy_phases(cfg, i))
    jax.block_until_ready(st)
    warm = time.perf_counter() - t0
    n = steps
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        st, m = step(st, real, c, key, regs=lazy_phases(cfg, i))
    jax.block_until_ready(st)
    dt = (time.perf_counter() - t0) / n
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves((st.g_params, st.d_params)))
    if not all(np.isfinite(float(v)) for v in m.values()):
        raise SystemExit(f"{precision} step at {res} px gave non-finite metrics: {m}")
    return dict(res=res, batch=batch, sec_per_kimg=dt * 1000 / batch, img_per_s=batch / dt,
                ms_per_step=dt * 1000, warmup_s=warm, params=n_params, steps=n)


def nvlabs_ms(tool: pathlib.Path, checkout: str, res: int, batch: int, steps: int, preset: str) -> float:
    """NVIDIA's ms/step from the measuring tool run in a subprocess (its last line)."""
    out = subprocess.run([sys.executable, str(tool), checkout, str(res), str(batch), str(steps), preset],
                         capture_output=True, text=True, check=False)
    m = re.search(r"ms/step ([0-9.]+)", out.stdout)
    if out.returncode or not m:
        raise SystemExit(f"nvlabs timing failed (exit {out.returncode}): {out.stderr.strip()[-400:]}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", default="32,64,256")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--augment", default="ada", choices=["ada", "noaug"])
    ap.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                    help="compute dtype of the 4 highest resolutions (params stay float32)")
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument("--nvlabs", metavar="DIR", help="NVlabs/stylegan2-ada-pytorch checkout: time it too")
    ap.add_argument("--nvlabs-tool", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "tools"
                                                 / "nvlabs_step_speed.py"))
    args = ap.parse_args()
    if args.nvlabs and not pathlib.Path(args.nvlabs, "training", "networks.py").exists():
        raise SystemExit(f"--nvlabs {args.nvlabs}: not a stylegan2-ada-pytorch checkout (no training/networks.py)")
    dev = jax.devices()[0]
    head = (f"Device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s), "
            f"jax {jax.__version__}, {platform.processor() or platform.machine()}")
    rows = ["| res | widths | precision | batch | params (G+D) | steps timed | ms/step | img/s | sec/kimg "
            "| compile + 5 steps (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    if args.nvlabs:
        rows = [rows[0] + " NVIDIA ms/step | speed vs NVIDIA |", rows[1] + " --- | --- |"]
    print(head, flush=True)
    for res in [int(r) for r in args.res.split(",")]:
        r = bench(res, args.batch, args.steps, args.augment, args.preset, args.precision)
        rows.append(f"| {r['res']} | {args.preset} | {args.precision} | {r['batch']} | {r['params']:,} | {r['steps']} | "
                    f"{r['ms_per_step']:.1f} | {r['img_per_s']:.2f} | {r['sec_per_kimg']:.1f} | "
                    f"{r['warmup_s']:.1f} |")
        if args.nvlabs:
            nv = nvlabs_ms(pathlib.Path(args.nvlabs_tool), args.nvlabs, res, args.batch, args.steps, args.preset)
            rows[-1] += f" {nv:.1f} | {nv / r['ms_per_step']:.2f}x |"
        print(rows[-1], flush=True)
    if args.record:
        out = pathlib.Path(__file__).with_name("RESULTS.md")
        cmd = "python bench/train_speed.py " + " ".join(sys.argv[1:])
        with open(out, "a") as f:
            f.write(f"\n### Training step, {datetime.date.today()} (augment={args.augment})\n\n"
                    f"`{cmd}`\n\n{head}\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
