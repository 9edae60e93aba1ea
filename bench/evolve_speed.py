"""Speed of the genetic algorithm over StyleGAN latents: jitted lax.scan vs a Python/NumPy loop.

  python bench/evolve_speed.py                       # pop 64, 256 at 32 and 64 px
  python bench/evolve_speed.py --pop 64 --res 32 --generations 10 --record

Both variants evolve normalised w+ genomes with the same fitness
(jaxgen.evolve.terms: D realism + identity distance to 64 reference faces
(pixel embedder) + image statistics + diversity) on a randomly initialised G/D
of the CPU-demo widths:

  jax    ``run_ga``: evosax SimpleGA ask -> style-mix crossover -> generate ->
         score -> tell, all generations in one jitted ``lax.scan`` (one call).
  numpy  the same GA written as a plain Python loop with NumPy (truncation
         selection of the top half, Gaussian mutation, style-mix crossover of
         two elites), calling the *same* jitted fitness once per generation and
         copying the population to and fitness back from the device each time.

Timed after a warm-up call that compiles (excluded); generations/s and
fitness evaluations/s (= popsize * generations / s). --record appends the
Markdown table to bench/RESULTS.md with the command line.
"""
import argparse
import datetime
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgen.evolve import terms as T  # noqa: E402
from jaxgen.evolve.fitness import Inputs, make_scorer  # noqa: E402
from jaxgen.evolve.ga import GAConfig, run_ga  # noqa: E402
from jaxgen.identity.pixel_embedder import pixel_features  # noqa: E402
from jaxgen.evolve.latents import w_statistics  # noqa: E402
from jaxgen.stylegan2 import networks  # noqa: E402


def setup(res: int):
    """(G, scorer, inputs) of a random G/D at `res` px, class 1 of 4, 64 random reference faces."""
    common = dict(img_resolution=res, img_channels=3, c_dim=4, channel_base=2048, channel_max=64)
    G, D = networks.build(dict(common, z_dim=64, w_dim=64, mapping_layers=2), common)
    g, d = networks.init_variables(G, D, jax.random.key(0))
    c = np.eye(4, dtype=np.float32)[1]
    mean, std = w_statistics(G, g, c, jax.random.PRNGKey(0))
    refs = jax.random.uniform(jax.random.PRNGKey(1), (64, res, res, 3), minval=-1, maxval=1)
    ref_emb, ref_ok = pixel_features(refs, 16, 0.5)
    scorer = make_scorer(G, (T.StyleGANRealism(D=D, weight=0.5),
                             T.Identity(embed=T.PixelEmbed(16), threshold=0.3, weight=1.0),
                             T.ImageStats(weight=0.1), T.Diversity(weight=0.5)))
    inputs = Inputs.create(g, w_mean=mean, w_std=std, c=c, term_vars={"realism": d},
                           ref_emb=ref_emb, ref_ok=ref_ok)
    return G, scorer, inputs


def numpy_ga(fitness, x0, pop, gens, sigma, num_ws, w_dim, seed=0):
    """Plain Python/NumPy GA with the same operators; fitness is called once per generation."""
    rng = np.random.default_rng(seed)
    dim = x0.size
    x = x0[None] + sigma * rng.standard_normal((pop, dim)).astype(np.float32)
    best = -np.inf
    for _ in range(gens):
        f = np.asarray(fitness(jnp.asarray(x)))          # device round trip
        order = np.argsort(-f)
        best = max(best, float(f[order[0]]))
        elite = x[order[:pop // 2]]
        a = elite[rng.integers(0, len(elite), pop)].reshape(pop, num_ws, w_dim)
        b = elite[rng.integers(0, len(elite), pop)].reshape(pop, num_ws, w_dim)
        cut = rng.integers(1, num_ws, pop)[:, None, None]
        child = np.where(np.arange(num_ws)[None, :, None] < cut, a, b).reshape(pop, dim)
        mix = rng.random(pop) < 0.3
        mutant = elite[rng.integers(0, len(elite), pop)] + sigma * rng.standard_normal((pop, dim))
        x = np.where(mix[:, None], child, mutant).astype(np.float32)
        x[0] = elite[0]                                  # elitism
    return best


def bench(res: int, pop: int, gens: int, reps: int):
    """Seconds per GA run, jitted scan vs NumPy loop, after a warm-up call that compiles."""
    G, scorer, inputs = setup(res)
    dim = scorer.space.dim
    x0 = jnp.zeros((dim,), jnp.float32)
    cfg = GAConfig(popsize=pop, generations=gens, sigma_init=0.5, crossover="style_mix",
                   mix_rate=0.3, num_ws=G.num_ws, w_dim=G.w_dim)
    t0 = time.perf_counter()
    jax.block_until_ready(run_ga(scorer.fitness, x0, jax.random.PRNGKey(0), cfg, inputs)["best_fitness"])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in range(reps):
        out = run_ga(scorer.fitness, x0, jax.random.PRNGKey(r + 1), cfg, inputs)
        jax.block_until_ready(out["best_fitness"])
    t_jax = (time.perf_counter() - t0) / reps
    fit = jax.jit(scorer.fitness)
    np_fit = lambda x: fit(x, inputs)  # noqa: E731
    numpy_ga(np_fit, np.zeros(dim, np.float32), pop, 1, 0.5, G.num_ws, G.w_dim)  # compile
    t0 = time.perf_counter()
    for r in range(reps):
        numpy_ga(np_fit, np.zeros(dim, np.float32), pop, gens, 0.5, G.num_ws, G.w_dim, seed=r)
    t_np = (time.perf_counter() - t0) / reps
    return dict(res=res, pop=pop, gens=gens, compile=compile_s, jax_s=t_jax, np_s=t_np,
                best_jax=float(out["best_fitness"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--res", default="32,64")
    p.add_argument("--pop", default="64,256")
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--record", action="store_true")
    a = p.parse_args(argv)
    dev = jax.devices()[0]
    rows = ["| res | pop | generations | jax gen/s | jax evals/s | numpy-loop gen/s | numpy-loop evals/s "
            "| speed-up | compile (s) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for res in [int(r) for r in a.res.split(",")]:
        for pop in [int(q) for q in a.pop.split(",")]:
            r = bench(res, pop, a.generations, a.reps)
            g = r["gens"]
            rows.append(f"| {res} | {pop} | {g} | {g / r['jax_s']:.2f} | {pop * g / r['jax_s']:.0f} | "
                        f"{g / r['np_s']:.2f} | {pop * g / r['np_s']:.0f} | {r['np_s'] / r['jax_s']:.2f}x | "
                        f"{r['compile']:.1f} |")
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    head = (f"### Genetic algorithm over latents, {datetime.date.today()}\n\n"
            f"`python bench/evolve_speed.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n\n"
            f"Device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s), "
            f"jax {jax.__version__}, {platform.machine()}; fitness = D realism + pixel identity vs 64 "
            "refs + stats + diversity, CPU-demo widths (64 channels), random weights\n\n")
    print(head + table)
    if a.record:
        with open(pathlib.Path(__file__).parent / "RESULTS.md", "a") as f:
            f.write("\n" + head + table + "\n")


if __name__ == "__main__":
    main()
