"""FID Inception-v3 port vs pytorch-fid 0.3.0 goldens (FORMAT.md Part 2).

Checks the torch-exact bilinear resize, every stage output (spatial mean and a 5x5 corner,
to localise a bug to one block), pool3 and logits at 299 and 64 px through both the raw
module and the batched InceptionFeatures extractor, and the weight loader on real
torch.save files (zip and legacy, with and without num_batches_tracked) and on bad input.
torch is used here only as a reference and to write .pth files.
"""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxgen.metrics import inception as inc

TAGS = (299, 64)
# Observed max abs diffs: pool3 6.3e-5 (299 px) / 4.7e-5 (64 px), logits 3.4e-5 / 2.3e-5;
# FORMAT.md suggests atol 1e-3 for pool3 (torch itself moves by 5.8e-5 with memory layout).
POOL3_ATOL = LOGITS_ATOL = 1e-3


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    with np.load(fixtures_dir / "fid_inception_golden.npz") as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def weights_npz(fixtures_dir):
    with np.load(fixtures_dir / "fid_inception_weights.npz") as w:
        return collections.OrderedDict((k, w[k]) for k in w.files)


@pytest.fixture(scope="module")
def variables(fixtures_dir):
    return inc.load_fid_inception_weights(fixtures_dir / "fid_inception_weights.npz")


@pytest.fixture(scope="module")
def module_outputs(golden, variables):
    """Raw FIDInceptionV3 outputs plus all stage outputs, for both input sizes."""
    model = inc.FIDInceptionV3()

    @jax.jit
    def run(v, x):
        out, state = model.apply(v, x, mutable=["intermediates"])
        return out, state["intermediates"]["stages"][0]

    res = {}
    for tag in TAGS:
        x = golden[f"img{tag}_uint8"].astype(np.float32) / 255.0
        out, stages = jax.device_get(run(variables, x))
        res[tag] = dict(out, stages=stages)
    return res


@pytest.fixture(scope="module")
def features(variables):
    return inc.InceptionFeatures(variables, batch_size=3)  # N=4: the second batch is padded


# ---------------------------------------------------------------------------------------------
# Resize.

@pytest.mark.parametrize("tag", TAGS)
def test_resized_input_matches_golden(golden, tag):
    x = golden[f"img{tag}_uint8"].astype(np.float32) / 255.0
    r = np.asarray(inc.resize_bilinear_torch(jnp.asarray(x), 299))
    assert r.shape == (4, 299, 299, 3) and r.dtype == np.float32
    mean = r.mean(axis=(1, 2), dtype=np.float64)  # float32 means over 89401 px drift by ~3e-5
    np.testing.assert_allclose(mean, golden[f"img{tag}_resized_mean"], rtol=0, atol=2e-6)
    crop = r[:, :16, :16].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(crop, golden[f"img{tag}_resized_crop16"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("in_hw,out_hw", [((64, 64), (299, 299)), ((37, 50), (23, 81)),
                                          ((300, 301), (299, 299)), ((5, 7), (5, 7)), ((1, 9), (4, 3))])
def test_resize_matches_torch_interpolate(in_hw, out_hw):
    x = np.random.default_rng(0).standard_normal((2, *in_hw, 3)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=out_hw, mode="bilinear",
                        align_corners=False).permute(0, 2, 3, 1).numpy()
    got = np.asarray(inc.resize_bilinear_torch(x, out_hw))
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)


def test_resize_does_not_antialias():
    """Downscaling by 2 samples pixel pairs: a 1-px checkerboard averages to exactly 0.5."""
    board = (np.indices((8, 8)).sum(0) % 2).astype(np.float32)[None, :, :, None]
    out = np.asarray(inc.resize_bilinear_torch(board, 4))
    np.testing.assert_array_equal(out, np.full((1, 4, 4, 1), 0.5, np.float32))
    # jax.image.resize would low-pass first; the port must follow torch instead.


# ---------------------------------------------------------------------------------------------
# Network.

@pytest.mark.parametrize("tag", TAGS)
def test_stage_outputs_match_golden(golden, module_outputs, tag):
    stages = module_outputs[tag]["stages"]
    assert set(stages) == set(inc.STAGES)
    for name in inc.STAGES:
        a = stages[name]
        mean_ref = golden[f"img{tag}_inter_{name}_mean"]
        assert a.shape[0] == 4 and a.shape[-1] == mean_ref.shape[1], name
        np.testing.assert_allclose(a.mean(axis=(1, 2), dtype=np.float64), mean_ref, rtol=0, atol=2e-4,
                                   err_msg=f"{name} spatial mean")
        np.testing.assert_allclose(a[:, :5, :5, :4].transpose(0, 3, 1, 2), golden[f"img{tag}_inter_{name}_corner"],
                                   rtol=0, atol=5e-4, err_msg=f"{name} corner")


def test_stage_shapes_299(module_outputs):
    hw = {k: v.shape[1:] for k, v in module_outputs[299]["stages"].items()}
    assert hw["Conv2d_1a_3x3"] == (149, 149, 32) and hw["Conv2d_2b_3x3"] == (147, 147, 64)
    assert hw["Conv2d_4a_3x3"] == (71, 71, 192) and hw["Mixed_5d"] == (35, 35, 288)
    assert hw["Mixed_6e"] == (17, 17, 768) and hw["Mixed_7c"] == (8, 8, 2048)


@pytest.mark.parametrize("tag", TAGS)
def test_module_pool3_logits_match_golden(golden, module_outputs, tag):
    out = module_outputs[tag]
    np.testing.assert_allclose(out["pool3"], golden[f"img{tag}_pool3"], rtol=0, atol=POOL3_ATOL)
    np.testing.assert_allclose(out["logits"], golden[f"img{tag}_logits"], rtol=0, atol=LOGITS_ATOL)
    print(f"\n{tag}px max|pool3 diff| {np.abs(out['pool3'] - golden[f'img{tag}_pool3']).max():.2e}"
          f"  max|logits diff| {np.abs(out['logits'] - golden[f'img{tag}_logits']).max():.2e}")


# ---------------------------------------------------------------------------------------------
# InceptionFeatures.

@pytest.mark.parametrize("tag", TAGS)
def test_features_uint8_match_golden(golden, features, tag):
    out = features(golden[f"img{tag}_uint8"])
    assert out["pool3"].shape == (4, 2048) and out["logits"].shape == (4, 1008)
    assert out["pool3"].dtype == np.float32 and out["logits"].dtype == np.float32
    np.testing.assert_allclose(out["pool3"], golden[f"img{tag}_pool3"], rtol=0, atol=POOL3_ATOL)
    np.testing.assert_allclose(out["logits"], golden[f"img{tag}_logits"], rtol=0, atol=LOGITS_ATOL)


def test_features_float_input_and_subsets(golden, features):
    imgs = golden["img64_uint8"]
    out_u8 = features(imgs)
    out_f = features(imgs.astype(np.float32) / 255.0)
    # Bit-equal: uint8 becomes float / 255 before the network, so both run one program.
    np.testing.assert_array_equal(out_f["pool3"], out_u8["pool3"])
    # Padding rows never leak into real rows: any subset gives the same rows.
    one = features(imgs[2:3])
    np.testing.assert_allclose(one["pool3"][0], out_u8["pool3"][2], rtol=0, atol=3e-4)
    assert features(imgs[:0])["pool3"].shape == (0, 2048)


def test_features_grayscale_is_repeated(golden, features):
    gray = golden["img64_uint8"][..., :1]
    out_gray = features(gray)
    out_rgb = features(np.repeat(gray, 3, axis=-1))
    np.testing.assert_allclose(out_gray["pool3"], out_rgb["pool3"], rtol=0, atol=1e-6)
    assert not np.allclose(out_gray["pool3"], golden["img64_pool3"], atol=1e-2)


def test_features_rejects_bad_input(features):
    with pytest.raises(ValueError, match="expected images"):
        features(np.zeros((2, 64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        features(np.zeros((2, 64, 64, 3), np.int32))


# ---------------------------------------------------------------------------------------------
# Weight loading.

def _assert_same_variables(a, b):
    fa = jax.tree_util.tree_flatten_with_path(a)[0]
    fb = dict(jax.tree_util.tree_flatten_with_path(b)[0])
    assert len(fa) == len(fb) == 566 - 94  # 94 BatchNorms' num_batches_tracked are not variables
    for path, leaf in fa:
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(fb[path]), err_msg=str(path))


def test_npz_loads_with_torch_layouts(variables, weights_npz):
    k = variables["params"]["Mixed_7c"]["branch3x3dbl_3b"]["conv"]["kernel"]
    w = weights_npz["Mixed_7c.branch3x3dbl_3b.conv.weight"]  # [384, 384, 3, 1] OIHW
    np.testing.assert_array_equal(np.asarray(k), w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(variables["params"]["fc"]["kernel"]), weights_npz["fc.weight"].T)
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["Mixed_5b"]["branch_pool"]["bn"]["var"]),
                                  weights_npz["Mixed_5b.branch_pool.bn.running_var"])
    assert sum(np.asarray(x).size for x in jax.tree_util.tree_leaves(variables)) == 23885392  # float values


@pytest.mark.parametrize("zip_format,with_nbt", [(True, True), (False, False), (True, False), (False, True)])
def test_pth_round_trip(tmp_path, variables, weights_npz, zip_format, with_nbt):
    sd = collections.OrderedDict(
        (k, torch.from_numpy(v.copy())) for k, v in weights_npz.items()
        if with_nbt or not k.endswith("num_batches_tracked"))
    assert len(sd) == (566 if with_nbt else 472)
    path = tmp_path / inc.FID_WEIGHTS_FILENAME
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    _assert_same_variables(inc.load_fid_inception_weights(path), variables)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        inc.load_fid_inception_weights(tmp_path / "nope.pth")
    msg = str(info.value)
    assert "nope.pth" in msg and inc.FID_WEIGHTS_URL in msg
    assert "github.com/mseitzer/pytorch-fid/releases" in msg and "--inception_weights" in msg


def test_wrong_and_missing_keys_are_listed(weights_npz):
    sd = dict(weights_npz)
    del sd["Mixed_6c.branch7x7dbl_4.bn.running_var"]
    sd["Mixed_6c.branch7x7dbl_4.bn.running_variance"] = np.ones(160, np.float32)
    sd["AuxLogits.fc.weight"] = np.ones((1008, 768), np.float32)
    sd["Mixed_5b.branch1x1.conv.weight"] = np.ones((64, 192, 3, 3), np.float32)
    with pytest.raises(inc.InceptionWeightsError) as info:
        inc.variables_from_state_dict(sd)
    msg = str(info.value)
    assert "1 missing keys: Mixed_6c.branch7x7dbl_4.bn.running_var" in msg
    assert "2 unexpected keys: AuxLogits.fc.weight, Mixed_6c.branch7x7dbl_4.bn.running_variance" in msg
    assert "Mixed_5b.branch1x1.conv.weight [64, 192, 3, 3] (expected [64, 192, 1, 1])" in msg
    # A stray num_batches_tracked for a module that is no BatchNorm is unexpected, too.
    sd = dict(weights_npz, **{"fc.num_batches_tracked": np.array(1)})
    with pytest.raises(inc.InceptionWeightsError, match="unexpected keys: fc.num_batches_tracked"):
        inc.variables_from_state_dict(sd)


def test_wrong_file_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(inc.InceptionWeightsError, match="472 missing keys") as info:
        inc.load_fid_inception_weights(path)
    assert "1 unexpected keys: foo.weight" in str(info.value) and "other.pth" in str(info.value)
