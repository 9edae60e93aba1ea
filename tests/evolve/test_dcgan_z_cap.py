"""The DCGAN decoder's z cap (latents.DCGANDecoder.max_z_rms): why, and what it computes.

SimpleGA's mutation is a random walk (child = elite parent + N(0, sigma^2) per coordinate),
so on a fitness that does not care about |z| the genome's rms grows as sqrt(1 + sigma^2 * steps):
a DCGAN whose G was trained on z ~ N(0, I) (rms 1) is then asked for images far off its prior
(the depth study measured rms 2.3 in the exported latents of the 20-generation sigma-0.5 GA).
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.evolve import fitness as F
from jaxgen.evolve import latents as L
from jaxgen.evolve.ga import GAConfig, run_ga

XLA_FAST_COMPILE = True   # compile-bound, no golden files: see tests/conftest.py


def flat(x):
    """A fitness blind to z: selection is arbitrary, only the mutations move the genomes."""
    return jnp.zeros(x.shape[0])


def test_simple_ga_random_walk_leaves_the_prior_radius():
    dim, gens, sigma = 256, 20, 0.5
    x0 = jax.random.normal(jax.random.PRNGKey(1), (dim,))
    x0 = x0 / jnp.sqrt(jnp.mean(x0 ** 2))                  # rms exactly 1, a typical prior draw
    out = run_ga(flat, x0, jax.random.PRNGKey(0), GAConfig(popsize=32, generations=gens, sigma_init=sigma))
    rms = np.sqrt(np.mean(np.asarray(out["final_population"]) ** 2, axis=1))
    # init spread + one mutation per generation: sqrt(1 + 0.25 * 21) = 2.5
    np.testing.assert_allclose(rms.mean(), np.sqrt(1 + sigma ** 2 * (gens + 1)), rtol=0.05)


def test_cap_z_rms_scales_outside_rows_onto_the_sphere():
    z = jnp.asarray([[3.0, 4.0, 0.0, 0.0],      # rms 2.5 -> scaled by 0.4
                     [0.5, -0.5, 0.5, 0.5],     # rms 0.5: inside, unchanged
                     [0.0, 0.0, 0.0, 0.0]])     # zero stays zero
    np.testing.assert_allclose(L.cap_z_rms(z, 1.0), [[1.2, 1.6, 0, 0], [0.5, -0.5, 0.5, 0.5], [0, 0, 0, 0]],
                               rtol=1e-6)
    np.testing.assert_allclose(L.cap_z_rms(z, 2.0)[0], [2.4, 3.2, 0, 0], rtol=1e-6)


def test_dcgan_decoder_renders_and_saves_the_capped_z():
    from jaxgen.dcgan.models import Generator
    G = Generator(resolution=16, channels=1, num_classes=4, z_dim=8, widths=(16, 8, 8))
    g = jax.jit(G.init)(jax.random.key(0), jnp.zeros([1, 8]), jnp.zeros([1], jnp.int32))["params"]
    inputs = F.Inputs.create({"params": g}, label=1)
    genomes = 3.0 * jax.random.normal(jax.random.PRNGKey(2), (3, 8))   # rms ~3, off the prior
    capped = L.DCGANDecoder(G, max_z_rms=1.0)
    z = capped.latents(genomes, inputs)
    np.testing.assert_allclose(np.sqrt(np.mean(z ** 2, axis=1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(capped.images(genomes, inputs),
                               G.apply({"params": g}, jnp.asarray(z), jnp.full([3], 1)), atol=1e-6)
    off = L.DCGANDecoder(G)                                               # default: z as evolved
    np.testing.assert_allclose(off.latents(genomes, inputs), genomes)
    assert not np.allclose(off.images(genomes, inputs), capped.images(genomes, inputs), atol=1e-3)


def test_zero_generations_export_the_best_of_the_initial_population(tmp_path):
    """generations 0: no evolution, the fitness only ranks (filters) the starting population."""
    import json
    from jaxgen.dcgan.models import Generator
    from jaxgen.evolve import terms as T
    from jaxgen.evolve.export import evolve_dataset
    from jaxgen.evolve.export_config import ClassTask, ExportConfig
    G = Generator(resolution=16, channels=1, num_classes=4, z_dim=8, widths=(16, 8, 8))
    g = jax.jit(G.init)(jax.random.key(0), jnp.zeros([1, 8]), jnp.zeros([1], jnp.int32))["params"]
    sc = F.make_scorer(L.DCGANDecoder(G, max_z_rms=1.0), (T.ImageStats(weight=1.0),))
    task = ClassTask("sad", sc, F.Inputs.create({"params": g}, label=2), None, "dcgan", [], "")
    s = evolve_dataset([task], GAConfig(popsize=8, generations=0, sigma_init=0.5),
                       ExportConfig(num_per_class=2, per_round=2, psi=1.0), str(tmp_path))
    assert s["classes"]["sad"]["exported"] == 2
    rows = [json.loads(r) for r in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    # the two best of the candidates (the start and its 8 spread copies), best first
    z = jnp.concatenate([jnp.asarray(np.load(tmp_path / r["latent"]))[None] for r in rows])
    fit = np.asarray(sc.fitness(z, task.inputs))
    np.testing.assert_allclose(fit, [r["fitness"] for r in rows], rtol=1e-5)
    assert fit[0] >= fit[1]
