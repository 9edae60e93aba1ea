"""Device check of issue 13 (item 6): the bench/ parts on one GPU, each under its own timeout.

Run through bench/gpu_check.sh (which sets PYTHONPATH to the carried packages and prints
nvidia-smi first); see that file for the device `run` command and the carry list.

  python bench/gpu_check.py --out DIR                 # GPU sizes, overall budget GPU_CHECK_BUDGET (460 s)
  python bench/gpu_check.py --out DIR --dry_run       # CPU, smallest sizes (budget 2400 s): plumbing only
  python bench/gpu_check.py --info                    # (internal) device/package report as INFO_JSON

Parts, in run order (the order is the priority: a part starts only while enough of the
budget is left, and each gets min(its own cap, what is left)):

  info          nvidia-smi query, jax.devices(), package versions and import checks
  nvbuild       (background, GPU only) builds NVIDIA's bias_act/upfirdn2d plugins with nvcc
                while the JAX parts compile, so that the nvlabs part only loads them
  fp32          python bench/train_speed.py --res 256 --preset paper --batch 32 --steps 16
  nvlabs        bench/nvlabs_gpu_speed.py: NVIDIA's iteration, variants fp32, tf32, mixed
  bf16          the fp32 part with --precision bf16   } only if `bench/train_speed.py --help`
  ga            python bench/evolve_speed.py --res 64 --pop 512 --generations 20 --reps 2
  inception     python bench/inception_speed.py --n 512 --batch 128 --sizes 299 64 --reps 3
  fp16          the fp32 part with --precision fp16   } lists --precision
  fp32_highest  the fp32 part with JAX_DEFAULT_MATMUL_PRECISION=highest (no TF32: like
                NVIDIA's allow_tf32=False); GPU only, last, skipped when no time is left

A part that fails or times out is reported (status, seconds, the tail of its output) and
the next one runs. After every part $OUT/gpu_results.md and $OUT/gpu_results.json are
rewritten, so whatever finished comes back even if the whole command is killed;
$OUT/gpu_check.log holds every line of every part. GPU_CHECK_PARTS=fp32,nvlabs (say)
runs only those parts (info always runs).
"""
import argparse
import datetime
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
TARGET_SEC_PER_KIMG = 6.0
NVIDIA_PUBLISHED = {"A100": 12.53, "V100": 20.84}  # NVIDIA's single-GPU sec/kimg at 256 px
PY = sys.executable

# Sizes: GPU (what the device run measures) and DRY (CPU, smallest: only checks that each part runs).
SIZES = {
    "gpu": dict(
        train=["--res", "256", "--preset", "paper", "--batch", "32", "--steps", "16"],
        nvlabs=["--res", "256", "--preset", "paper", "--batch", "32", "--steps", "16", "--warmup", "5",
                "--variants", "fp32,tf32,mixed"],
        ga=["--res", "64", "--pop", "512", "--generations", "20", "--reps", "2"],
        inception=["--n", "512", "--batch", "128", "--sizes", "299", "64", "--reps", "3"]),
    "dry": dict(
        train=["--res", "32", "--preset", "cpu", "--batch", "2", "--steps", "2", "--augment", "noaug"],
        nvlabs=["--device", "cpu", "--res", "32", "--preset", "cpu", "--batch", "2", "--steps", "2", "--warmup", "1",
                "--variants", "fp32,tf32"],
        ga=["--res", "32", "--pop", "8", "--generations", "2", "--reps", "1"],
        inception=["--n", "2", "--batch", "2", "--sizes", "64", "--reps", "1"]),
}
# (cap seconds, least seconds worth starting with) per part; the GPU caps fit a 460 s budget
# when compiles behave, and the order decides what is dropped when they do not.
CAPS = {"gpu": dict(info=60, help=60, fp32=300, nvlabs=150, bf16=200, ga=100, inception=90, fp16=200,
                    fp32_highest=200, nvbuild=300),
        "dry": dict(info=120, help=120, fp32=900, nvlabs=300, bf16=900, ga=400, inception=300, fp16=900,
                    fp32_highest=900, nvbuild=0)}
MIN_START = dict(info=10, help=10, fp32=60, bf16=60, nvlabs=40, ga=30, inception=25, fp16=60, fp32_highest=60)
TRAIN_PARTS = ("fp32", "bf16", "fp16", "fp32_highest")
TRAIN_HEADER = ["| res | widths | batch | params (G+D) | steps timed | ms/step | img/s | sec/kimg | compile + 5 steps (s) |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
ORDER = ["fp32", "nvlabs", "bf16", "ga", "inception", "fp16", "fp32_highest"]


# ---------------------------------------------------------------------------------------- info

def info_main():
    """Print INFO_JSON: devices, versions, and whether the packages jaxgen needs import."""
    import importlib
    import importlib.metadata as md
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    out = {"python": sys.version.split()[0], "executable": sys.executable,
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    vers = {}
    for p in ["jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin", "flax", "optax",
              "orbax-checkpoint", "chex", "numpy", "scipy", "torch", "evosax", "ml-collections", "dotmap", "clu",
              "absl-py", "pyyaml", "etils", "tensorstore", "scikit-learn", "scikit-image"]:
        try:
            vers[p] = md.version(p)
        except Exception:  # noqa: BLE001
            vers[p] = None
    out["versions"] = vers
    imports = {}
    for m in ["jax", "flax", "optax", "orbax.checkpoint", "evosax", "ml_collections", "dotmap", "clu", "absl", "yaml",
              "torch"]:
        try:
            mod = importlib.import_module(m)
            imports[m] = "ok: " + str(pathlib.Path(getattr(mod, "__file__", "") or "?").parent)
        except Exception as e:  # noqa: BLE001
            imports[m] = f"FAILED: {type(e).__name__}: {e}"
    out["imports"] = imports
    try:
        import jax
        out["jax_devices"] = [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()]
        out["jax_backend"] = jax.default_backend()
        out["jax_default_matmul_precision"] = str(jax.config.jax_default_matmul_precision)
    except Exception as e:  # noqa: BLE001
        out["jax_devices"] = f"FAILED: {type(e).__name__}: {e}"
    try:
        import torch
        out["torch_cuda"] = dict(version=torch.version.cuda, available=torch.cuda.is_available(),
                                 device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except Exception as e:  # noqa: BLE001
        out["torch_cuda"] = f"FAILED: {type(e).__name__}: {e}"
    tools = {}
    for tool, arg in [("nvcc", "--version"), ("ninja", "--version"), ("nvidia-smi", "--version")]:
        path = shutil.which(tool)
        if not path:
            tools[tool] = None
            continue
        try:
            r = subprocess.run([path, arg], capture_output=True, text=True, timeout=20)
            tools[tool] = f"{path}: " + (r.stdout.strip().splitlines() or ["?"])[-1]
        except Exception as e:  # noqa: BLE001
            tools[tool] = f"{path}: FAILED {e}"
    out["tools"] = tools
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            out["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
        except Exception as e:  # noqa: BLE001
            out["nvidia_smi"] = f"FAILED {e}"
    print("INFO_JSON " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------- running

class Log:
    """Every line of every part, to stdout and $OUT/gpu_check.log, prefixed with the part's name."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def line(self, tag, text):
        s = f"[{tag}] {text}" if tag else text
        with self.lock:
            print(s, flush=True)
            self.f.write(s + "\n")


class Proc:
    """A child in its own process group, its output read line by line by a thread."""

    def __init__(self, tag, cmd, env, log):
        self.tag, self.lines, self.t0 = tag, [], time.perf_counter()
        log.line(tag, "$ " + " ".join(cmd))
        self.p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", start_new_session=True)
        self.reader = threading.Thread(target=self._read, args=(log,), daemon=True)
        self.reader.start()

    def _read(self, log):
        for raw in self.p.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            log.line(self.tag, line)

    def wait(self, timeout):
        """Wait up to `timeout` s; on expiry kill the whole process group. Returns (rc, timed_out)."""
        try:
            rc = self.p.wait(timeout=max(timeout, 0.1))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, grace in [(signal.SIGTERM, 5), (signal.SIGKILL, 5)]:
                try:
                    os.killpg(self.p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.p.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            rc = self.p.returncode
        self.reader.join(timeout=5)
        self.seconds = time.perf_counter() - self.t0
        return rc, timed_out


# ------------------------------------------------------------------------------------- parsing

def md_rows(lines):
    """The last Markdown table in a part's output: header, separator and every table row after it
    (rows may be interleaved with log lines); all table lines if no header came (a timed-out part
    whose rows were printed as they finished)."""
    t = [ln for ln in lines if ln.startswith("|") and ln.rstrip().endswith("|")]
    seps = [i for i, ln in enumerate(t) if set(ln.replace("|", "").split()) == {"---"}]
    return t[seps[-1] - 1:] if seps and seps[-1] > 0 else t


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def num(s):
    try:
        return float(s.replace(",", "").rstrip("x"))
    except ValueError:
        return None


def parse_train(lines):
    """bench/train_speed.py rows: res, widths, [precision,] batch, params, steps, ms/step, img/s,
    sec/kimg, compile (the precision column exists since --precision does)."""
    rows = []
    for ln in md_rows(lines):
        c = cells(ln)
        if len(c) >= 9 and c[0].isdigit():
            prec = c.pop(2) if not c[2].isdigit() else "fp32"
            if len(c) < 9:
                continue
            rows.append(dict(res=int(c[0]), widths=c[1], precision=prec, batch=int(c[2]), params=c[3],
                             steps=int(c[4]), ms_per_step=num(c[5]), img_per_s=num(c[6]),
                             sec_per_kimg=num(c[7]), compile_s=num(c[8])))
    head = next((ln for ln in lines if ln.startswith("Device:")), "")
    return dict(rows=rows, device_line=head)


def parse_nvlabs(lines):
    res, ops = [], None
    for ln in lines:
        if ln.startswith("RESULT_JSON "):
            res.append(json.loads(ln[len("RESULT_JSON "):]))
        elif ln.startswith("OPS_JSON "):
            ops = json.loads(ln[len("OPS_JSON "):])
    return dict(rows=res, ops=ops)


def parse_ga(lines):
    rows = []
    for ln in md_rows(lines):
        c = cells(ln)
        if len(c) >= 9 and c[0].isdigit():
            rows.append(dict(res=int(c[0]), pop=int(c[1]), generations=int(c[2]), jax_gen_per_s=num(c[3]),
                             jax_evals_per_s=num(c[4]), numpy_gen_per_s=num(c[5]), numpy_evals_per_s=num(c[6]),
                             speedup=num(c[7]), compile_s=num(c[8])))
    return dict(rows=rows)


def parse_inception(lines):
    rows = []
    for ln in md_rows(lines):
        c = cells(ln)
        if len(c) >= 7 and c[1].startswith("uint8"):
            rows.append(dict(backend=c[0], input=c[1], n=int(c[2]), batch=int(c[3]), images_per_s=num(c[4]),
                             ms_per_image=num(c[5]), first_call_s=num(c[6])))
    return dict(rows=rows)


def parse_info(lines):
    for ln in lines:
        if ln.startswith("INFO_JSON "):
            return json.loads(ln[len("INFO_JSON "):])
    return {}


# ------------------------------------------------------------------------------------- report

def short(cmd):
    """A command as the report shows it: 'python' for the interpreter, paths relative to the repo."""
    return " ".join(["python"] + [os.path.relpath(c, REPO) if c.startswith(str(REPO)) else c for c in cmd[1:]])


def tail(lines, n=25):
    return "\n".join(lines[-n:])


def kimg_note(sec):
    if sec is None:
        return ""
    vs = ", ".join(f"{sec_pub / sec:.2f}x NVIDIA's {gpu} {sec_pub}" for gpu, sec_pub in NVIDIA_PUBLISHED.items())
    return f"target < {TARGET_SEC_PER_KIMG:g}: {'MET' if sec < TARGET_SEC_PER_KIMG else 'NOT met'}; speed {vs}"


def write_report(out, state):
    parts, info, dry = state["parts"], state.get("info", {}), state["mode"] == "dry"
    L = [f"# GPU check ({'DRY RUN on CPU: plumbing only, the figures mean nothing' if dry else 'device run'}), "
         f"{state['started']}", "",
         f"Commit {state.get('commit', '?')}; budget {state['budget_s']} s, elapsed {state['elapsed_s']:.0f} s; "
         f"`{state['command']}`", ""]
    if info:
        L += ["## Device", "",
              f"- nvidia-smi: {info.get('nvidia_smi', '(none)')}",
              f"- jax.devices(): {info.get('jax_devices')} (backend {info.get('jax_backend')}, "
              f"default matmul precision {info.get('jax_default_matmul_precision')})",
              f"- torch: {info.get('versions', {}).get('torch')} / CUDA {info.get('torch_cuda')}",
              f"- python {info.get('python')} ({info.get('executable')}); PYTHONPATH={info.get('PYTHONPATH')}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items() if v),
              "- missing: " + (", ".join(k for k, v in info.get("versions", {}).items() if not v) or "none"),
              "- imports: " + "; ".join(f"{k} {v}" for k, v in info.get("imports", {}).items()),
              "- tools: " + "; ".join(f"{k}: {v}" for k, v in info.get("tools", {}).items()), ""]
    # Headline figures.
    L += ["## Summary", "", "| part | figure | value | note |", "| --- | --- | --- | --- |"]
    for name in ["fp32", "bf16", "fp16", "fp32_highest"]:
        p = parts.get(name)
        if not p:
            continue
        rows = (p.get("figures") or {}).get("rows") or []
        if rows:
            for r in rows:
                L.append(f"| jaxgen {name} | sec/kimg at {r['res']} px ({r['widths']}, batch {r['batch']}) | "
                         f"{r['sec_per_kimg']} | {r['ms_per_step']} ms/step, {r['img_per_s']} img/s, compile + 5 steps "
                         f"{r['compile_s']} s; {kimg_note(r['sec_per_kimg']) if not dry else 'dry run'} |")
        else:
            L.append(f"| jaxgen {name} | sec/kimg | - | {p['status']}{': ' + p['note'] if p.get('note') else ''} |")
    if state.get("mixed_precision_note"):
        L.append(f"| jaxgen mixed precision | - | - | {state['mixed_precision_note']} |")
    p = parts.get("nvlabs")
    if p:
        fig = p.get("figures") or {}
        for r in fig.get("rows", []):
            if "error" in r:
                L.append(f"| NVIDIA {r['variant']} | sec/kimg | - | FAILED: {r['error'][-200:]!r} |")
                continue
            L.append(f"| NVIDIA {r['variant']} | sec/kimg at {r['res']} px ({r['preset']}, batch {r['batch']}) | "
                     f"{r['sec_per_kimg']:.2f} | {r['ms_per_step']:.1f} ms/step, {r['img_per_s']:.1f} img/s, "
                     f"peak {r['peak_mem_gib']:.1f} GiB; num_fp16_res {r['num_fp16_res']}, tf32 {r['tf32']} |")
        for op, o in (fig.get("ops") or {}).items():
            L.append(f"| NVIDIA ops | {op} | {o['mode']} | {(o.get('error') or '')[-300:]!r} |"
                     if o.get("error") else f"| NVIDIA ops | {op} | {o['mode']} | |")
        if not fig.get("rows"):
            L.append(f"| NVIDIA | sec/kimg | - | {p['status']}{': ' + p['note'] if p.get('note') else ''} |")
        jx = {n: parts[n]["figures"]["rows"][0]["sec_per_kimg"] for n in ("fp32", "fp32_highest", "bf16")
              if parts.get(n, {}).get("figures", {}).get("rows")}
        nv = {r["variant"]: r["sec_per_kimg"] for r in fig.get("rows", []) if "error" not in r}
        for a, b in [("fp32", "tf32"), ("fp32_highest", "fp32"), ("bf16", "mixed"), ("fp32", "mixed")]:
            if a in jx and b in nv and jx[a]:
                L.append(f"| jaxgen {a} vs NVIDIA {b} | NVIDIA sec/kimg / jaxgen sec/kimg | {nv[b] / jx[a]:.2f} | "
                         f"> 1: jaxgen faster |")
    p = parts.get("ga")
    if p:
        rows = (p.get("figures") or {}).get("rows") or []
        for r in rows:
            L.append(f"| GA | evaluations/s (res {r['res']}, pop {r['pop']}, {r['generations']} gens) | "
                     f"{r['jax_evals_per_s']} | jitted scan; numpy loop {r['numpy_evals_per_s']} evals/s, "
                     f"compile {r['compile_s']} s |")
        if not rows:
            L.append(f"| GA | evaluations/s | - | {p['status']}{': ' + p['note'] if p.get('note') else ''} |")
    p = parts.get("inception")
    if p:
        rows = (p.get("figures") or {}).get("rows") or []
        for r in rows:
            L.append(f"| Inception | images/s ({r['input']}, N {r['n']}, batch {r['batch']}) | {r['images_per_s']} | "
                     f"{r['backend']}; first call {r['first_call_s']} s |")
        if not rows:
            L.append(f"| Inception | images/s | - | {p['status']}{': ' + p['note'] if p.get('note') else ''} |")
    L += ["", "## Parts", "", "| part | status | seconds | timeout (s) | command |", "| --- | --- | --- | --- | --- |"]
    for name, p in parts.items():
        L.append(f"| {name} | {p['status']} | {p.get('seconds', 0):.0f} | {p.get('timeout_s', '-')} | "
                 f"`{p.get('cmd', '-')}` |")
    for name, p in parts.items():
        t = md_rows(p.get("lines", []))
        if t and name in TRAIN_PARTS and not t[0].startswith("| res "):
            t = TRAIN_HEADER + t  # bench/train_speed.py prints its header only with --record
        if t or p["status"] not in ("ok", "skipped", "unavailable"):
            L += ["", f"### {name}: {p['status']}" + (f" ({p['note']})" if p.get("note") else ""), ""]
            if t:
                L += t
            dev = (p.get("figures") or {}).get("device_line")
            if dev:
                L += ["", dev]
            if p["status"] not in ("ok", "skipped", "unavailable"):
                L += ["", "Last lines:", "", "```", tail(p.get("lines", [])), "```"]
    (out / "gpu_results.md").write_text("\n".join(L) + "\n")
    js = dict(state)
    js["parts"] = {k: {kk: vv for kk, vv in v.items() if kk != "lines"} | {"tail": tail(v.get("lines", []), 40)}
                   for k, v in parts.items()}
    (out / "gpu_results.json").write_text(json.dumps(js, indent=1, default=str) + "\n")


# ---------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_check_out"))
    ap.add_argument("--dry_run", action="store_true", help="CPU, smallest sizes (checks the plumbing)")
    ap.add_argument("--budget", type=float, default=None, help="overall seconds (GPU_CHECK_BUDGET; 460 / 2400 dry)")
    ap.add_argument("--parts", default=os.environ.get("GPU_CHECK_PARTS", ""), help="comma list (default: all)")
    ap.add_argument("--nvlabs", default=os.environ.get("NVLABS_DIR", ""), help="stylegan2-ada-pytorch checkout")
    ap.add_argument("--info", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.info:
        return info_main()

    mode = "dry" if a.dry_run else "gpu"
    budget = a.budget or float(os.environ.get("GPU_CHECK_BUDGET", 2400 if a.dry_run else 460))
    t_start = time.perf_counter()
    deadline = t_start + budget - 8  # keep a few seconds to write the report
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_check.log")
    sz, caps = SIZES[mode], CAPS[mode]
    wanted = [p.strip() for p in a.parts.split(",") if p.strip()] or \
        [p for p in ORDER if not (mode == "dry" and p == "fp32_highest")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if a.dry_run:
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    nv_dir = a.nvlabs or next((d for d in [REPO / "bench" / ".nvlabs", pathlib.Path("/tmp/nvlabs")]
                               if (d / "training").is_dir()), REPO / "bench" / ".nvlabs")
    weights = next((w for w in [REPO.parent / "shared" / "fixtures" / "fid_inception_weights.npz",
                                REPO / "bench" / ".gpu_pkgs" / "fixtures" / "fid_inception_weights.npz"]
                    if w.is_file()), None)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
    except Exception:  # noqa: BLE001
        commit = "? (no git)"
    state = dict(mode=mode, started=datetime.datetime.now().isoformat(timespec="seconds"), budget_s=budget,
                 elapsed_s=0.0, commit=commit, command=" ".join(sys.argv), parts={},
                 targets=dict(sec_per_kimg_below=TARGET_SEC_PER_KIMG, nvidia_published_256px=NVIDIA_PUBLISHED))

    def left():
        return deadline - time.perf_counter()

    def save():
        state["elapsed_s"] = time.perf_counter() - t_start
        write_report(out, state)

    def run_part(name, cmd, parser=None, extra_env=None, note="", need=None):
        """Run one part under min(cap, budget left); record status, figures, output lines.
        Not started when less than `need` (MIN_START) seconds are left."""
        rec = dict(status="skipped", seconds=0.0, cmd=short(cmd), note=note)
        state["parts"][name] = rec
        timeout = min(caps.get(name, 120), left())
        if timeout < (need or MIN_START.get(name, 20)):
            rec["note"] = (note + "; " if note else "") + (f"not started: {max(left(), 0):.0f} s of the budget left, "
                                                           f"{need or MIN_START.get(name, 20):.0f} s needed")
            log.line("gpu_check", f"part {name}: skipped ({rec['note']})")
            save()
            return rec
        rec["timeout_s"] = int(timeout)
        log.line("gpu_check", f"part {name}: start, timeout {timeout:.0f} s, {left():.0f} s of the budget left")
        pr = Proc(name, cmd, dict(env, **(extra_env or {})), log)
        rc, timed_out = pr.wait(timeout)
        rec.update(rc=rc, seconds=pr.seconds, lines=pr.lines,
                   status="timeout" if timed_out else ("ok" if rc == 0 else f"failed (rc {rc})"))
        if parser:
            try:
                rec["figures"] = parser(pr.lines)
            except Exception as e:  # noqa: BLE001
                rec["figures"] = {}
                rec["note"] = (rec["note"] + "; " if rec["note"] else "") + f"output not parsed: {e}"
        if timed_out and (rec.get("figures") or {}).get("rows"):
            rec["note"] = (rec["note"] + "; " if rec["note"] else "") + "timed out after some rows: partial"
        log.line("gpu_check", f"part {name}: {rec['status']} in {pr.seconds:.0f} s")
        save()
        return rec

    log.line("gpu_check", f"mode {mode}, budget {budget:.0f} s, parts {','.join(wanted)}, out {out}, python {PY}")
    info = run_part("info", [PY, __file__, "--info"], parse_info)
    state["info"] = info.get("figures") or {}

    # Background build of NVIDIA's plugins (nvcc, CPU only) while the JAX parts compile.
    build, status_file = None, "/tmp/gpu_check_nvlabs_ops.json"
    nv_env = {"TORCH_EXTENSIONS_DIR": "/tmp/gpu_check_torch_extensions", "MAX_JOBS": "8"}
    cap = (state["info"].get("nvidia_smi") or "").split(",")
    if len(cap) >= 4 and re.fullmatch(r"\d+\.\d+", cap[3].strip()) and "TORCH_CUDA_ARCH_LIST" not in os.environ:
        nv_env["TORCH_CUDA_ARCH_LIST"] = cap[3].strip()  # build for this GPU only (9.0 on an H200)
    nv_ok = (nv_dir / "training").is_dir()
    if mode == "gpu" and "nvlabs" in wanted and nv_ok:
        if os.path.exists(status_file):
            os.remove(status_file)
        log.line("gpu_check", f"nvbuild: building NVIDIA's custom ops in the background (cap {caps['nvbuild']} s)")
        build = Proc("nvbuild", [PY, "bench/nvlabs_gpu_speed.py", str(nv_dir), "--build_only", "--status",
                                 status_file], dict(env, **nv_env), log)
        build_deadline = time.perf_counter() + caps["nvbuild"]
        state["parts"]["nvbuild"] = dict(status="running", seconds=0.0, cmd=short(build.p.args))

    def finish_build():
        if build is None or state["parts"]["nvbuild"]["status"] != "running":
            return
        rc, timed_out = build.wait(min(build_deadline - time.perf_counter(), left()))
        state["parts"]["nvbuild"].update(rc=rc, seconds=build.seconds, lines=build.lines,
                                         status="timeout" if timed_out else ("ok" if rc == 0 else f"failed (rc {rc})"))
        log.line("gpu_check", f"nvbuild: {state['parts']['nvbuild']['status']} after {build.seconds:.0f} s")

    # Mixed precision: only if bench/train_speed.py --help lists --precision.
    precisions = []
    if {"bf16", "fp16"} & set(wanted):
        h = run_part("help", [PY, "bench/train_speed.py", "--help"])
        text = "\n".join(h.get("lines", []))
        if h["status"] != "ok":
            state["mixed_precision_note"] = f"mixed precision: unknown (train_speed.py --help: {h['status']})"
        elif "--precision" in text:
            m = re.search(r"--precision\s+\{([^}]*)\}", text)
            choices = [c.strip() for c in m.group(1).split(",")] if m else ["bf16", "fp16"]
            precisions = [p for p in ("bf16", "fp16") if p in choices]
            state["mixed_precision_note"] = f"--precision listed (choices {choices})"
        else:
            state["mixed_precision_note"] = "mixed precision: not available in this commit"
        log.line("gpu_check", state["mixed_precision_note"])

    train = [PY, "bench/train_speed.py"] + sz["train"]

    def train_need():
        """The other training-step parts compile programs as large as fp32's: start one only with
        fp32's time (+15%) left; after an fp32 timeout, only when a cap's worth is left."""
        f = state["parts"].get("fp32")
        if f and f["status"] == "ok":
            return max(MIN_START["fp32"], 1.15 * f["seconds"])
        return caps["fp32"] if f and f["status"] == "timeout" else None

    for name in wanted:
        if name == "fp32":
            run_part(name, train, parse_train)
        elif name in ("bf16", "fp16"):
            if name in precisions:
                run_part(name, train + ["--precision", name], parse_train, need=train_need())
            else:
                state["parts"][name] = dict(status="unavailable", seconds=0.0,
                                            note=state.get("mixed_precision_note", "not run"))
                save()
        elif name == "fp32_highest":
            run_part(name, train, parse_train, {"JAX_DEFAULT_MATMUL_PRECISION": "highest"},
                     note="JAX_DEFAULT_MATMUL_PRECISION=highest (no TF32)", need=train_need())
        elif name == "nvlabs":
            if not nv_ok:
                state["parts"][name] = dict(status="failed", seconds=0.0, note=f"no stylegan2-ada-pytorch checkout at "
                                            f"{nv_dir} (bench/gpu_wheels.sh copies one to bench/.nvlabs)")
                save()
                continue
            finish_build()
            extra = ["--status", status_file] if build is not None else []
            run_part(name, [PY, "bench/nvlabs_gpu_speed.py", str(nv_dir)] + sz["nvlabs"] + extra, parse_nvlabs,
                     nv_env)
        elif name == "ga":
            run_part(name, [PY, "bench/evolve_speed.py"] + sz["ga"], parse_ga)
        elif name == "inception":
            if weights is None:
                state["parts"][name] = dict(status="failed", seconds=0.0, note="no fid_inception_weights.npz "
                                            "(bench/gpu_wheels.sh copies it to bench/.gpu_pkgs/fixtures)")
                save()
                continue
            run_part(name, [PY, "bench/inception_speed.py"] + sz["inception"] + ["--weights", str(weights)],
                     parse_inception)
        elif name not in ("info", "help"):
            log.line("gpu_check", f"unknown part {name!r} (known: {', '.join(ORDER)})")
    if build is not None and state["parts"]["nvbuild"]["status"] == "running":
        build.wait(0)  # nvlabs was not reached: stop the build
        state["parts"]["nvbuild"].update(status="stopped (nvlabs part not run)", seconds=build.seconds)
    save()
    bad = [k for k, v in state["parts"].items() if v["status"] not in ("ok", "unavailable")]
    log.line("gpu_check", f"done in {time.perf_counter() - t_start:.0f} s; "
                          f"{'all parts ok' if not bad else 'not ok: ' + ', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main() or 0)
