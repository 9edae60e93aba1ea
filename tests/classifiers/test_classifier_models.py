"""Flax classifiers (jaxgen.classifiers.models) and the Keras .h5 loader vs Keras itself.

Keras (3.x, TF backend) serves only as the reference and to write weight files: its
ResNet50V2 (64 px), ResNet152V2 (32 px) and InceptionResNetV2 (75 px, its minimum) are built
with weights=None (nothing is downloaded), every BatchNormalization gets random gamma/beta and
moving statistics (so inference-mode BN matters), the weights are saved and loaded with
load_keras_h5, and the Flax eval-mode logits and pooled features must equal Keras's.
Observed max |diff| of the logits (|logits| ~ 1): 4.8e-7 ResNet50V2, 1.9e-6 ResNet152V2,
7.7e-7 InceptionResNetV2.  The Flax models run un-jitted (op by op), which is faster than
compiling them on a 2-core CPU.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax.traverse_util import flatten_dict  # noqa: E402

from jaxgen.classifiers import keras_h5, models  # noqa: E402

keras = pytest.importorskip("keras")

NUM_CLASSES = 5
# Keras count_params() with the 1000-class ImageNet head (includes BN moving statistics).
KERAS_PARAMS_1000 = {"resnet50v2": 25_613_800, "resnet152v2": 60_380_648,
                     "inception_resnet_v2": 55_873_736}
CASES = {"resnet50v2": ("ResNet50V2", 64), "resnet152v2": ("ResNet152V2", 32),
         "inception_resnet_v2": ("InceptionResNetV2", 75)}


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _init_shapes(model, size, channels=3):
    return jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, size, size, channels)), train=False),
                          jax.random.key(0))


def _assert_close(out, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-4 * scale)


def _assert_trees_equal(a, b):
    fa, fb = flatten_dict(a), flatten_dict(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=str(k))


# ----------------------------------------------------------------------------------------------
# Architecture, registry, shapes.

@pytest.mark.parametrize("name", sorted(KERAS_PARAMS_1000))
def test_param_counts_equal_keras(name):
    model = models.build_classifier(name, 1000)
    assert _count(_init_shapes(model, models.MIN_INPUT_SIZE[name])) == KERAS_PARAMS_1000[name]


@pytest.mark.parametrize("name", sorted(models.CLASSIFIERS))
def test_registry_shapes_train_eval_features(name):
    size = models.MIN_INPUT_SIZE[name]
    model = models.build_classifier(name, 7)
    v = _init_shapes(model, size)
    assert set(v) == {"params", "batch_stats"}
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(v))
    x = jnp.zeros((3, size, size, 3))
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
    assert logits.shape == (3, 7) and logits.dtype == jnp.float32
    (logits, feats), upd = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, return_features=True, mutable=["batch_stats"]), v, x)
    dim = {"small_cnn": 256, "inception_resnet_v2": 1536}.get(name, 2048)
    assert logits.shape == (3, 7) and feats.shape == (3, dim)
    assert jax.tree_util.tree_structure(upd["batch_stats"]) == jax.tree_util.tree_structure(v["batch_stats"])


def test_small_cnn_runs_16px_grayscale_bf16():
    model = models.build_classifier("small_cnn", 3, dtype=jnp.bfloat16, width=8)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 1)), jnp.float32)
    v = model.init(jax.random.key(1), x, train=False)
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(v))
    assert v["params"]["predictions"]["kernel"].shape == (64, 3)
    (logits, feats), upd = model.apply(v, x, train=True, return_features=True, mutable=["batch_stats"])
    assert logits.shape == (4, 3) and logits.dtype == jnp.float32 and feats.shape == (4, 64)
    old = v["batch_stats"]["stage1_conv1"]["bn"]["mean"]
    new = upd["batch_stats"]["stage1_conv1"]["bn"]["mean"]
    assert not np.allclose(np.asarray(old), np.asarray(new))   # train mode updates the running stats
    ev = model.apply(v, x, train=False)
    assert ev.shape == (4, 3) and bool(jnp.all(jnp.isfinite(ev)))


def test_build_and_preprocess():
    with pytest.raises(ValueError, match="unknown classifier 'vgg16'.*resnet50v2"):
        models.build_classifier("vgg16", 3)
    img = np.array([0, 255, 51], np.uint8).reshape(1, 1, 3, 1)
    for name in models.CLASSIFIERS:
        np.testing.assert_allclose(np.asarray(models.preprocess(name, img)).ravel(), [-1.0, 1.0, -0.6],
                                   atol=1e-6)
    with pytest.raises(ValueError, match="unknown classifier"):
        models.preprocess("nope", img)
    assert len(models.irv2_convbn_paths()) == 203   # Keras's conv2d ... conv2d_202


# ----------------------------------------------------------------------------------------------
# Parity with Keras.

def _randomise_bn(km, rng):
    for layer in km.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            vals = []
            for w in layer.weights:
                shape = tuple(w.shape)
                if "moving_variance" in w.path:
                    vals.append(rng.uniform(0.5, 2.0, shape))
                elif "gamma" in w.path:
                    vals.append(rng.uniform(0.5, 1.5, shape))
                else:   # beta, moving_mean
                    vals.append(rng.normal(0.0, 0.2, shape))
            layer.set_weights([v.astype(np.float32) for v in vals])


@pytest.fixture(scope="module")
def keras_case(tmp_path_factory):
    """name -> dict(model, x, logits, features, weights .weights.h5 path, dir); built lazily."""
    cache = {}

    def get(name):
        if name not in cache:
            cls, size = CASES[name]
            keras.utils.set_random_seed(0)
            km = getattr(keras.applications, cls)(weights=None, include_top=True, classes=NUM_CLASSES,
                                                  input_shape=(size, size, 3), classifier_activation=None)
            rng = np.random.default_rng(1)
            _randomise_bn(km, rng)
            d = tmp_path_factory.mktemp(name)
            km.save_weights(str(d / "w.weights.h5"))
            x = rng.uniform(-1.0, 1.0, (2, size, size, 3)).astype(np.float32)
            feats = keras.Model(km.input, km.get_layer("avg_pool").output)(x, training=False)
            cache[name] = dict(model=km, x=x, logits=np.asarray(km(x, training=False)),
                               features=np.asarray(feats), weights=d / "w.weights.h5", dir=d)
        return cache[name]
    return get


@pytest.mark.parametrize("name", ["resnet50v2", "inception_resnet_v2", "resnet152v2"])
def test_eval_logits_and_features_match_keras(name, keras_case):
    case = keras_case(name)
    v = keras_h5.load_keras_h5(case["weights"], name, NUM_CLASSES, include_top=True)
    assert _count(v) == case["model"].count_params()
    logits, feats = models.build_classifier(name, NUM_CLASSES).apply(v, case["x"], train=False,
                                                                     return_features=True)
    assert float(np.abs(case["logits"]).max()) > 0.1   # a non-trivial reference
    _assert_close(logits, case["logits"])
    _assert_close(feats, case["features"])


def test_resnet50v2_train_mode_matches_keras(keras_case):
    """Batch-statistics BN and the running-average update (momentum 0.99) as in Keras."""
    case = keras_case("resnet50v2")
    km = keras.models.clone_model(case["model"])
    km.set_weights(case["model"].get_weights())
    v = keras_h5.load_keras_h5(case["weights"], "resnet50v2", NUM_CLASSES, include_top=True)
    logits, upd = models.build_classifier("resnet50v2", NUM_CLASSES).apply(
        v, case["x"], train=True, mutable=["batch_stats"])
    ref = np.asarray(km(case["x"], training=True))   # also updates km's moving statistics
    _assert_close(logits, ref)
    for layer, mod in (("post_bn", ("post_bn",)), ("conv3_block2_1_bn", ("conv3_block2", "1_bn"))):
        bn = km.get_layer(layer)
        got = upd["batch_stats"]
        for m in mod:
            got = got[m]
        _assert_close(got["mean"], np.asarray(bn.moving_mean))
        _assert_close(got["var"], np.asarray(bn.moving_variance))


# ----------------------------------------------------------------------------------------------
# File layouts, include_top, errors.

def _write_keras2_style(src_h5, dst):
    """Rewrite Keras 3's legacy model.save() weights as the Keras-2 save_weights layout of the
    official ImageNet files: root `layer_names`, `layer/kernel:0` weight names, and auto-named
    layers numbered from 1 (conv2d_1 ...) instead of Keras 3's conv2d, conv2d_1, ..."""
    def rename(n):
        for base in ("conv2d", "batch_normalization"):
            if n == base:
                return f"{base}_1"
            if n.startswith(base + "_") and n[len(base) + 1:].isdigit():
                return f"{base}_{int(n[len(base) + 1:]) + 1}"
        return n

    with h5py.File(src_h5, "r") as f, h5py.File(dst, "w") as g:
        root = f["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]]
        g.attrs["layer_names"] = [rename(n).encode() for n in names]
        g.attrs["backend"], g.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for n in names:
            grp = g.create_group(rename(n))
            wn = [w.decode() if isinstance(w, bytes) else w for w in root[n].attrs["weight_names"]]
            new_wn = [f"{rename(n)}/{w.rsplit('/', 1)[-1]}:0" for w in wn]
            grp.attrs["weight_names"] = [w.encode() for w in new_wn]
            for w, nw in zip(wn, new_wn):
                grp.create_dataset(nw, data=np.asarray(root[n][w]))


def test_legacy_h5_layouts_load_identically(keras_case):
    case = keras_case("inception_resnet_v2")
    ref = keras_h5.load_keras_h5(case["weights"], "inception_resnet_v2", NUM_CLASSES, include_top=True)
    legacy = case["dir"] / "full_model.h5"
    case["model"].save(str(legacy))                   # Keras 3's legacy writer: model_weights/...
    assert keras_h5.read_keras_h5(legacy)[0] == "keras2_h5_model"
    _assert_trees_equal(keras_h5.load_keras_h5(legacy, "inception_resnet_v2", NUM_CLASSES, True), ref)
    k2 = case["dir"] / "keras2_style.h5"
    _write_keras2_style(legacy, k2)
    layout, layers = keras_h5.read_keras_h5(k2)
    assert layout == "keras2_h5" and "conv2d_203" in layers and "conv2d" not in layers
    assert [r for r, _ in layers["conv_7b_bn"]] == ["beta", "moving_mean", "moving_variance"]
    _assert_trees_equal(keras_h5.load_keras_h5(k2, "inception_resnet_v2", NUM_CLASSES, True), ref)


def test_keras_archive_and_include_top_false(keras_case):
    case = keras_case("resnet50v2")
    full = keras_h5.load_keras_h5(case["weights"], "resnet50v2", NUM_CLASSES, include_top=True)
    archive = case["dir"] / "model.keras"
    case["model"].save(str(archive))
    _assert_trees_equal(keras_h5.load_keras_h5(archive, "resnet50v2", NUM_CLASSES, True), full)

    v = keras_h5.load_keras_h5(case["weights"], "resnet50v2", 7, include_top=False,
                               rng=jax.random.key(3))
    fresh = models.make_head(7).init(jax.random.key(3), jnp.zeros((1, 2048)))["params"]
    _assert_trees_equal(v["params"]["predictions"], fresh)
    assert v["params"]["predictions"]["kernel"].shape == (2048, 7)
    body = lambda t: {k: a for k, a in flatten_dict(t).items() if k[:2] != ("params", "predictions")}
    _assert_trees_equal(body(v), body(full))
    assert set(flatten_dict(v)) == set(flatten_dict(full))


def test_loader_errors(keras_case, tmp_path):
    weights = keras_case("resnet50v2")["weights"]
    with pytest.raises(ValueError, match="no Keras weights for model 'small_cnn'"):
        keras_h5.load_keras_h5(weights, "small_cnn", 3)
    with pytest.raises(ValueError, match="no Keras weights for model 'resnet50'.*resnet50v2"):
        keras_h5.load_keras_h5(weights, "resnet50", 3)
    with pytest.raises(FileNotFoundError):
        keras_h5.load_keras_h5(tmp_path / "missing.h5", "resnet50v2", 3)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(keras_h5.KerasH5Error, match="not an HDF5 file"):
        keras_h5.load_keras_h5(tmp_path / "text.h5", "resnet50v2", 3)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(keras_h5.KerasH5Error, match="no Keras weights found"):
        keras_h5.load_keras_h5(tmp_path / "other.h5", "resnet50v2", 3)
    # Right format, wrong architecture: both directions list the offending layers.
    with pytest.raises(keras_h5.KerasH5Error, match=r"102 file layers unmatched \[.*conv2_block1_preact_bn"
                                                   r".*448 model layers missing.*conv2d_1a_3x3/conv"):
        keras_h5.load_keras_h5(weights, "inception_resnet_v2", 3)
    with pytest.raises(keras_h5.KerasH5Error, match=r"0 file layers unmatched.*missing.*conv3_block5_1_conv"):
        keras_h5.load_keras_h5(weights, "resnet152v2", 3)
    # A head of the wrong size with include_top=True.
    with pytest.raises(keras_h5.KerasH5Error, match=r"predictions/kernel: shape \(2048, 5\) != \(2048, 7\)"):
        keras_h5.load_keras_h5(weights, "resnet50v2", 7, include_top=True)
