"""NVlabs stylegan2-ada-pytorch training iteration on a CUDA device, timed like bench/train_speed.py.

  python bench/nvlabs_gpu_speed.py NVLABS_DIR --res 256 --batch 32 --steps 16 --preset paper
  python bench/nvlabs_gpu_speed.py NVLABS_DIR --build_only --status /tmp/nv_ops.json
  python bench/nvlabs_gpu_speed.py NVLABS_DIR --device cpu --res 32 --preset cpu --batch 2 --steps 2 --variants fp32

NVLABS_DIR is a checkout of NVIDIA's stylegan2-ada-pytorch; its modules (dnnlib, training,
torch_utils) are imported from there and none of its code is copied into this project.
bench/gpu_wheels.sh copies one into the git-ignored bench/.nvlabs so that it can be carried
to a device machine.

The model and the phase sequence are those of /work/shared/tools/nvlabs_step_speed.py (the
CPU tool): G/D with c_dim 4 and a 2-layer mapping, StyleGAN2Loss (r1_gamma 1) with
AugmentPipe 'bgc' at p=0.3, Adam with lazy-regularisation ratios, and per iteration Gmain,
Greg every 4th, Dmain, Dreg every 16th, then the G_ema lerp, exactly as training_loop.py runs
them. Differences from the CPU tool: everything lives on --device (cuda by default), the
timed span ends with torch.cuda.synchronize(), training_loop.py's backend settings are
applied (cudnn.benchmark on, conv2d/grid_sample gradfix enabled), and iterations 0..4 run
untimed before iterations 1..STEPS are timed (bench/train_speed.py also compiles/warms up
with 5 steps: both regularisers, none and Greg only).

Variants (--variants, comma separated):
  fp32   num_fp16_res 0, conv_clamp None, TF32 off (training_loop.py's allow_tf32=False):
         full fp32, like jaxgen with JAX_DEFAULT_MATMUL_PRECISION=highest
  tf32   the same network with TF32 allowed for matmuls and convolutions: like JAX's
         default precision on a GPU, where XLA may use TF32 for fp32 dots/convolutions
  mixed  NVIDIA's own default: fp16 in the 4 highest-resolution blocks, conv_clamp 256,
         TF32 off (train.py's 'auto' config; what NVIDIA's published sec/kimg use)

Custom CUDA ops: bias_act and upfirdn2d are C++/CUDA plugins that NVIDIA builds at first use
with torch.utils.cpp_extension (nvcc + ninja); if the build fails, their `_init()` returns
False and the ops silently run their slow reference (pure PyTorch) implementation. This
script calls both `_init()`s explicitly and reports which happened, with the tail of the
build error. --build_only just builds them (into TORCH_EXTENSIONS_DIR; gpu_check.sh runs
this in the background while JAX compiles) and writes --status; a later timing run given
--status loads the built plugins from that cache, or, where the status says a build failed
or is missing, uses the reference path without building again. conv2d_gradfix and
grid_sample_gradfix have custom paths only for PyTorch 1.7-1.9 and otherwise fall back to
the plain torch ops (reported too).

Output: one Markdown row per variant and, for bench/gpu_check.py, one line
'RESULT_JSON {...}' per variant plus 'OPS_JSON {...}'.
"""
import argparse
import copy
import json
import os
import sys
import time
import traceback
import warnings

import numpy as np

PRESETS = {"paper": dict(channel_base=16384, channel_max=512, z=512),
           "cpu": dict(channel_base=2048, channel_max=64, z=64)}
VARIANTS = {"fp32": dict(num_fp16_res=0, conv_clamp=None, tf32=False),
            "tf32": dict(num_fp16_res=0, conv_clamp=None, tf32=True),
            "mixed": dict(num_fp16_res=4, conv_clamp=256, tf32=False)}


def _tail(text: str, n: int = 1500) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def init_op(name: str, mod) -> dict:
    """Run one plugin's `_init()` (builds it, or loads it from TORCH_EXTENSIONS_DIR); report the outcome."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ok = bool(mod._init())  # False: NVIDIA's code caught the build error and warned
            err = "\n".join(str(w.message) for w in caught)
        except Exception:  # noqa: BLE001 - anything else is a failure too
            ok, err = False, traceback.format_exc()
    sec = round(time.perf_counter() - t0, 1)
    print(f"custom op {name}: {'CUDA plugin built/loaded' if ok else 'FAILED -> reference path'} ({sec} s)",
          flush=True)
    if not ok:
        print(_tail(err, 3000), flush=True)
    return dict(ok=ok, seconds=sec, error="" if ok else _tail(err))


def build_ops(status_path: str = "") -> dict:
    """Build (or load) NVIDIA's bias_act and upfirdn2d plugins; write the outcome to status_path."""
    from torch_utils.ops import bias_act, upfirdn2d
    st = {}
    for name, mod in [("bias_act", bias_act), ("upfirdn2d", upfirdn2d)]:
        st[name] = init_op(name, mod)
        if status_path:  # after each op: a build killed half-way still leaves the first one usable
            with open(status_path + ".tmp", "w") as f:
                json.dump(st, f)
            os.replace(status_path + ".tmp", status_path)
    return st


def setup_ops(device, status_path: str) -> dict:
    """Decide and report how bias_act / upfirdn2d / gradfix ops run in this process."""
    import torch
    from torch_utils.ops import bias_act, conv2d_gradfix, grid_sample_gradfix, upfirdn2d
    conv2d_gradfix.enabled = True        # training_loop.py
    grid_sample_gradfix.enabled = True
    torch.backends.cudnn.benchmark = True
    ops = {}
    if device.type != "cuda":
        for name in ("bias_act", "upfirdn2d"):
            ops[name] = dict(ok=False, mode="reference (device is not cuda; plugins are CUDA-only)", error="")
    else:
        prebuilt = None
        if status_path:
            try:
                with open(status_path) as f:
                    prebuilt = json.load(f)
            except (OSError, ValueError):
                prebuilt = {}
        if prebuilt is None:             # no background build: build here
            st = build_ops()
        else:
            st = {}
            for name, mod in [("bias_act", bias_act), ("upfirdn2d", upfirdn2d)]:
                pre = prebuilt.get(name)
                if pre and pre.get("ok"):
                    st[name] = init_op(name, mod)
                else:                    # failed or never finished: reference path, no second build
                    mod._inited, mod._plugin = True, None
                    why = pre["error"] if pre else "background build did not finish (timed out or was killed)"
                    st[name] = dict(ok=False, seconds=0.0, error=why)
                    print(f"custom op {name}: not built -> reference path ({_tail(why, 300)})", flush=True)
        for name, s in st.items():
            ops[name] = dict(ok=s["ok"], mode="CUDA plugin" if s["ok"] else "reference path (plugin not built)",
                             error=s.get("error", ""))
    x = torch.zeros([1, 1, 4, 4], device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ops["conv2d_gradfix"] = dict(ok=bool(conv2d_gradfix._should_use_custom_op(x)))
        ops["grid_sample_gradfix"] = dict(ok=bool(grid_sample_gradfix._should_use_custom_op()))
    for k in ("conv2d_gradfix", "grid_sample_gradfix"):
        ops[k]["mode"] = "custom op" if ops[k]["ok"] else "torch fallback (custom op only on PyTorch 1.7-1.9)"
    return ops


def bench(device, res, batch, steps, warmup, preset, variant):
    import torch
    import dnnlib
    from training.augment import AugmentPipe
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    P, V = PRESETS[preset], VARIANTS[variant]
    torch.backends.cuda.matmul.allow_tf32 = V["tf32"]
    torch.backends.cudnn.allow_tf32 = V["tf32"]
    torch.manual_seed(0)
    G = Generator(z_dim=P["z"], c_dim=4, w_dim=P["z"], img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=P["channel_base"], channel_max=P["channel_max"],
                                        num_fp16_res=V["num_fp16_res"], conv_clamp=V["conv_clamp"]))
    G = G.train().requires_grad_(False).to(device)
    D = Discriminator(c_dim=4, img_resolution=res, img_channels=3, channel_base=P["channel_base"],
                      channel_max=P["channel_max"], num_fp16_res=V["num_fp16_res"], conv_clamp=V["conv_clamp"],
                      epilogue_kwargs=dict(mbstd_group_size=4)).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    aug = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                      lumaflip=1, hue=1, saturation=1).train().requires_grad_(False).to(device)
    aug.p.copy_(torch.as_tensor(0.3))
    loss = StyleGAN2Loss(device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=aug, r1_gamma=1.0)
    phases = []
    for name, module, reg in [("G", G, 4), ("D", D, 16)]:
        r = reg / (reg + 1)
        opt = torch.optim.Adam(module.parameters(), lr=0.0025 * r, betas=(0.0, 0.99 ** r), eps=1e-8)
        phases += [dnnlib.EasyDict(name=name + "main", module=module, opt=opt, interval=1),
                   dnnlib.EasyDict(name=name + "reg", module=module, opt=opt, interval=reg)]
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.uniform(-1, 1, [batch, 3, res, res]).astype(np.float32)).to(device)
    c = torch.from_numpy(np.eye(4, dtype=np.float32)[rng.integers(0, 4, batch)]).to(device)

    def iteration(batch_idx):
        for ph in phases:
            if batch_idx % ph.interval:
                continue
            ph.opt.zero_grad(set_to_none=True)
            ph.module.requires_grad_(True)
            z = torch.randn([batch, G.z_dim], device=device)
            loss.accumulate_gradients(phase=ph.name, real_img=real, real_c=c, gen_z=z, gen_c=c, sync=True,
                                      gain=ph.interval)
            ph.module.requires_grad_(False)
            for p in ph.module.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            ph.opt.step()
        with torch.no_grad():
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.copy_(p.lerp(pe, 0.99))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for i in range(warmup):
        iteration(i)
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        iteration(i)
    sync()
    dt = (time.perf_counter() - t0) / steps
    n_params = sum(p.numel() for m in (G, D) for p in m.parameters())
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return dict(variant=variant, res=res, batch=batch, steps=steps, warmup_iters=warmup, preset=preset,
                params=int(n_params), ms_per_step=dt * 1000, img_per_s=batch / dt, sec_per_kimg=dt * 1000 / batch,
                warmup_s=warm, peak_mem_gib=peak, **{k: v for k, v in VARIANTS[variant].items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nvlabs_dir", help="checkout of NVlabs/stylegan2-ada-pytorch (imported, not copied)")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=5, help="untimed iterations 0..W-1 before the timed 1..STEPS")
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--variants", default="fp32,tf32,mixed")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--build_only", action="store_true", help="only build the custom ops, write --status")
    ap.add_argument("--status", default="", help="JSON status of a --build_only run (read, or written)")
    ap.add_argument("--verbosity", default="brief", choices=["none", "brief", "full"],
                    help="torch_utils.custom_ops.verbosity ('full' prints the whole build)")
    args = ap.parse_args()

    nv = os.path.abspath(args.nvlabs_dir)
    if not os.path.isdir(os.path.join(nv, "training")):
        sys.exit(f"{nv} is not a stylegan2-ada-pytorch checkout (no training/ folder)")
    sys.path.insert(0, nv)
    import torch
    from torch_utils import custom_ops
    custom_ops.verbosity = args.verbosity
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), cuda available: {torch.cuda.is_available()}, "
          f"TORCH_EXTENSIONS_DIR={os.environ.get('TORCH_EXTENSIONS_DIR', '(default)')}, "
          f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(detected)')}", flush=True)
    if args.build_only:
        st = build_ops(args.status)
        sys.exit(0 if all(s["ok"] for s in st.values()) else 1)

    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}", flush=True)
    ops = setup_ops(device, args.status)
    # The gradfix fallbacks warn at every call ('once' does not hold: NVIDIA's code enters
    # catch_warnings at every call); they are reported in OPS_JSON, so silence them.
    warnings.filterwarnings("ignore", message=r".*gradfix not supported on PyTorch")
    print("conv2d_gradfix: " + ops["conv2d_gradfix"]["mode"] + "; grid_sample_gradfix: "
          + ops["grid_sample_gradfix"]["mode"] + " (their per-call warnings are silenced)", flush=True)
    print("OPS_JSON " + json.dumps(ops), flush=True)
    print("| variant | res | widths | batch | params (G+D) | steps timed | ms/step | img/s | sec/kimg "
          f"| warm-up {args.warmup} iters (s) | peak GPU mem (GiB) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- "
          "| --- | --- |", flush=True)
    failed = 0
    for v in [v.strip() for v in args.variants.split(",") if v.strip()]:
        try:
            r = bench(device, args.res, args.batch, args.steps, args.warmup, args.preset, v)
        except Exception:  # noqa: BLE001 - report and go on with the next variant
            failed += 1
            print(f"variant {v} FAILED:\n{traceback.format_exc()}", flush=True)
            print("RESULT_JSON " + json.dumps(dict(variant=v, error=_tail(traceback.format_exc()))), flush=True)
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"| nvlabs {v} | {r['res']} | {r['preset']} | {r['batch']} | {r['params']:,} | {r['steps']} | "
              f"{r['ms_per_step']:.1f} | {r['img_per_s']:.2f} | {r['sec_per_kimg']:.2f} | {r['warmup_s']:.1f} | "
              f"{r['peak_mem_gib']:.1f} |", flush=True)
        print("RESULT_JSON " + json.dumps(r), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
