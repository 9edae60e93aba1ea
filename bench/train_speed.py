"""Speed of the StyleGAN2-ADA training step (all four phases, ADA on) per resolution.

  python bench/train_speed.py                     # 32, 64, 256 px on whatever device JAX has
  python bench/train_speed.py --res 64 --batch 16 --steps 20 --record

Times steady-state iterations: step 0 (which compiles) is excluded, then steps
1..N are timed; path length runs every 4th step and R1 every 16th, so N=16
covers one whole regularisation cycle (smaller N over-weights the cheap steps,
and the table says which N was used). Prints a Markdown table; --record
appends it to bench/RESULTS.md with the command line.

Widths: --preset paper uses NVIDIA's 'auto' widths for each resolution (what a
GPU run uses); --preset cpu uses the narrow widths of the CPU demo configs.
"""
import argparse
import datetime
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxgen.stylegan2 import networks, state as state_lib  # noqa: E402
from jaxgen.stylegan2.loss import LossConfig  # noqa: E402
from jaxgen.stylegan2.step import StepConfig, make_train_step  # noqa: E402

# Channel widths: 'paper' = NVIDIA's auto config (fmaps 0.5 below 512 px, z/w 512);
# 'cpu' = the narrow widths of configs/acne.py:tiny (64 channels at most).
PRESETS = {"paper": dict(channel_base=16384, channel_max=512, z=512),
           "cpu": dict(channel_base=2048, channel_max=64, z=64)}


def bench(res: int, batch: int, steps: int, augment: str, preset: str):
    p = PRESETS[preset]
    common = dict(img_resolution=res, img_channels=3, c_dim=4, channel_base=p["channel_base"],
                  channel_max=p["channel_max"])
    G, D = networks.build(dict(common, z_dim=p["z"], w_dim=p["z"], mapping_layers=2), common)
    g_vars, d_vars = networks.init_variables(G, D, jax.random.key(0))
    g_tx = state_lib.make_optimizer(state_lib.OptConfig(reg_interval=4))
    d_tx = state_lib.make_optimizer(state_lib.OptConfig(reg_interval=16))
    st = state_lib.init_state(g_vars, d_vars, g_tx, d_tx, ada_p=0.3)
    cfg = StepConfig(batch_size=batch, loss=LossConfig(r1_gamma=1.0), augment=augment)
    step = jax.jit(make_train_step(cfg, G, D, g_tx, d_tx, np.full(4, 0.25)), donate_argnums=0)
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, [batch, res, res, 3]).astype(np.float32)
    c = np.eye(4, dtype=np.float32)[rng.integers(0, 4, batch)]
    key = jax.random.key(1)
    t0 = time.perf_counter()
    st, m = step(st, real, c, key)  # step 0: compiles (both lazy-regularisation branches)
    jax.block_until_ready(st)
    warm = time.perf_counter() - t0
    n = steps
    t0 = time.perf_counter()
    for _ in range(n):
        st, m = step(st, real, c, key)
    jax.block_until_ready(st)
    dt = (time.perf_counter() - t0) / n
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves((st.g_params, st.d_params)))
    return dict(res=res, batch=batch, sec_per_kimg=dt * 1000 / batch, img_per_s=batch / dt,
                ms_per_step=dt * 1000, warmup_s=warm, params=n_params, steps=n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", default="32,64,256")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--augment", default="ada", choices=["ada", "noaug"])
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    dev = jax.devices()[0]
    head = (f"Device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s), "
            f"jax {jax.__version__}, {platform.processor() or platform.machine()}")
    rows = ["| res | widths | batch | params (G+D) | steps timed | ms/step | img/s | sec/kimg | compile + step 0 (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    print(head, flush=True)
    for res in [int(r) for r in args.res.split(",")]:
        r = bench(res, args.batch, args.steps, args.augment, args.preset)
        rows.append(f"| {r['res']} | {args.preset} | {r['batch']} | {r['params']:,} | {r['steps']} | "
                    f"{r['ms_per_step']:.1f} | {r['img_per_s']:.2f} | {r['sec_per_kimg']:.1f} | "
                    f"{r['warmup_s']:.1f} |")
        print(rows[-1], flush=True)
    if args.record:
        out = pathlib.Path(__file__).with_name("RESULTS.md")
        cmd = "python bench/train_speed.py " + " ".join(sys.argv[1:])
        with open(out, "a") as f:
            f.write(f"\n### Training step, {datetime.date.today()} (augment={args.augment})\n\n"
                    f"`{cmd}`\n\n{head}\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
