"""Generative baselines: conditional VAE (jaxgen.baselines.vae) and per-class
GMM / KDE on PCA (jaxgen.baselines.density)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.baselines import density
from jaxgen.baselines import vae as V

XLA_FAST_COMPILE = True   # compile-bound, no golden files: see tests/conftest.py


def _classes_dataset(n_per_class=24, size=16, channels=1, seed=0):
    """Three clearly different classes: bright left half, bright top half, mid-gray
    disc; each with random brightness jitter and pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    protos = [np.where(xx < size // 2, 210, 40), np.where(yy < size // 2, 210, 40),
              np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2, 128, 10)]
    imgs, labels = [], []
    for c, p in enumerate(protos):
        for _ in range(n_per_class):
            a = p[..., None] + rng.uniform(-20, 20) + rng.normal(0, 12, (size, size, channels))
            imgs.append(np.clip(a, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(imgs), np.array(labels)


# ------------------------------------------------------------------------ VAE


def test_elbo_loss_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 2, 2, 1)).astype(np.float32)
    a = rng.normal(0, 1, (3, 2, 2, 1)).astype(np.float32)
    mean = rng.normal(0, 1, (3, 4)).astype(np.float32)
    logvar = rng.normal(0, 0.5, (3, 4)).astype(np.float32)
    x64, a64, m64, lv64 = (v.astype(np.float64).reshape(3, -1) for v in (x, a, mean, logvar))
    kl = 0.5 * np.sum(np.exp(lv64) + m64 ** 2 - 1 - lv64, axis=1)
    sigma = 0.3
    rec_g = (np.sum((x64 - np.tanh(a64)) ** 2, 1) / (2 * sigma ** 2)
             + 0.5 * 4 * np.log(2 * np.pi * sigma ** 2))
    p = 1 / (1 + np.exp(-2 * a64))
    t = (x64 + 1) / 2
    rec_b = -np.sum(t * np.log(p) + (1 - t) * np.log(1 - p), axis=1)
    for lik, rec in (("gaussian", rec_g), ("bernoulli", rec_b)):
        loss, aux = V.elbo_loss(jnp.asarray(x), jnp.asarray(a), jnp.asarray(mean),
                                jnp.asarray(logvar), beta=0.7, likelihood=lik, sigma=sigma)
        assert float(aux["kl"]) == pytest.approx(kl.mean(), rel=1e-5)
        assert float(aux["recon"]) == pytest.approx(rec.mean(), rel=1e-5)
        assert float(loss) == pytest.approx(rec.mean() + 0.7 * kl.mean(), rel=1e-5)
    with pytest.raises(ValueError, match="likelihood"):
        V.elbo_loss(x, a, mean, logvar, likelihood="poisson")


def test_vae_module_shapes_and_names():
    model = V.ConditionalVAE(resolution=16, channels=3, num_classes=4, latent_dim=6,
                             base_channels=4, max_channels=8)
    x = jnp.zeros((2, 16, 16, 3))
    y = jnp.array([0, 3])
    params = model.init({"params": jax.random.PRNGKey(0), "latent": jax.random.PRNGKey(1)},
                        x, y)["params"]
    assert set(params) == {"encoder", "decoder"}
    assert set(params["encoder"]) == {"stem", "down0", "down1", "hidden", "mean", "logvar"}
    assert set(params["decoder"]) == {"fc", "up1", "up0", "to_image"}
    assert params["encoder"]["stem"]["kernel"].shape == (3, 3, 3 + 4, 4)
    logits, mean, logvar = model.apply({"params": params}, x, y,
                                       rngs={"latent": jax.random.PRNGKey(2)})
    assert logits.shape == (2, 16, 16, 3) and mean.shape == logvar.shape == (2, 6)
    img = model.apply({"params": params}, 5 * jnp.ones((2, 6)), y, method=V.ConditionalVAE.decode)
    assert img.shape == (2, 16, 16, 3) and float(jnp.abs(img).max()) <= 1.0


def test_vae_training_lowers_loss_sampling_and_reload(tmp_path):
    images, labels = _classes_dataset(16, size=16)
    cfg = dict(latent_dim=8, base_channels=8, max_channels=16, steps=400, batch_size=16,
               learning_rate=2e-3, log_every=100, sigma=0.2)
    model, params, hist = V.train_vae(images, labels, 3, cfg, workdir=tmp_path / "vae",
                                      key=jax.random.PRNGKey(0), verbose=False)
    assert [h["step"] for h in hist] == [100, 200, 300, 400]
    first, last = hist[0]["loss"], hist[-1]["loss"]
    assert np.isfinite(last) and last < first - 0.5 * abs(first)
    assert hist[-1]["recon"] < hist[0]["recon"]
    # the label steers the samples: each class's sample mean is nearest its own class mean
    s = V.sample_vae(model, params, np.repeat([0, 1, 2], 20), jax.random.PRNGKey(5))
    d = np.linalg.norm(_class_means(s, np.repeat([0, 1, 2], 20))[:, None]
                       - _class_means(images, labels)[None], axis=-1)
    for c in range(3):
        assert d[c, c] < 0.95 * min(d[c, o] for o in range(3) if o != c), d
    labs = np.array([0, 1, 2, 2, 1])
    samples = V.sample_vae(model, params, labs, jax.random.PRNGKey(5))
    assert samples.shape == (5, 16, 16, 1) and samples.dtype == np.uint8
    assert samples.std() > 1.0     # not a constant image
    assert (tmp_path / "vae" / V.PARAMS_FILE).is_file() and (tmp_path / "vae" / V.CONFIG_FILE).is_file()
    with pytest.raises(ValueError, match="labels"):
        V.sample_vae(model, params, np.array([3]), jax.random.PRNGKey(0))


# -------------------------------------------------------------------- density


def _class_means(images, labels):
    x = images.reshape(len(images), -1).astype(np.float64)
    return np.stack([x[labels == c].mean(0) for c in np.unique(labels)])


@pytest.mark.parametrize("kind,kw", [("gmm", dict(n_components=3)),
                                     ("gmm", dict(n_components=2, covariance_type="diag")),
                                     ("gmm", dict(n_components=2, covariance_type="tied")),
                                     ("kde", dict(bandwidth="scott")),
                                     ("kde", dict(bandwidth="cv"))])
def test_density_samples_follow_their_class(kind, kw):
    images, labels = _classes_dataset(24)
    model = density.fit_density(images, labels, kind=kind, pca_dim=8, seed=0, **kw)
    assert sorted(model.classes) == [0, 1, 2] and model.image_shape == (16, 16, 1)
    req = np.repeat([2, 0, 1], 30)
    s = density.sample_density(model, req, seed=1)
    assert s.shape == (90, 16, 16, 1) and s.dtype == np.uint8
    real, fake = _class_means(images, labels), _class_means(s, req)
    d = np.linalg.norm(fake[:, None] - real[None], axis=-1)        # [fake class, real class]
    for c in range(3):
        others = min(d[c, o] for o in range(3) if o != c)
        assert d[c, c] < 0.1 * others, (kind, d)
    # samples vary, are deterministic in the seed
    assert s[req == 0].std(axis=0).mean() > 3.0
    np.testing.assert_array_equal(density.sample_density(model, req, seed=1), s)
    assert not np.array_equal(density.sample_density(model, req, seed=2), s)
    if kind == "kde":
        h = model.classes[0].bandwidth
        assert h > 0 and (kw["bandwidth"] != "scott" or h == pytest.approx(24 ** (-1 / 12)))


def test_density_clipping_rgb_and_errors():
    images, labels = _classes_dataset(5, size=8, channels=3)
    model = density.fit_density(images, labels, kind="gmm", n_components=10, pca_dim=50)
    assert all(cd.pca_dim == 4 and cd.n_components == 5 for cd in model.classes.values())
    assert density.sample_density(model, [0, 1, 2, 0], seed=0).shape == (4, 8, 8, 3)
    same = np.repeat(images[:1], 3, axis=0)       # a class with no variance -> its mean image
    m = density.fit_density(same, np.zeros(3, np.int64), kind="kde")
    np.testing.assert_array_equal(density.sample_density(m, [0, 0]), np.repeat(same[:1], 2, 0))
    with pytest.raises(ValueError, match=r"at least 2 images.*\{7: 1\}"):
        density.fit_density(images[:4], np.array([0, 0, 0, 7]), kind="gmm")
    with pytest.raises(ValueError, match="no density was fitted"):
        density.sample_density(model, [3])
    with pytest.raises(ValueError, match="kind"):
        density.fit_density(images, labels, kind="flow")
