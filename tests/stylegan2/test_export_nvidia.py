"""Weights out: a jaxgen StyleGAN2 run -> NVIDIA state dicts (.safetensors) + constructor kwargs.

The fixture networks (NVIDIA's own state dicts, shared/fixtures/sg2_*_G/D.npz) go into a
jaxgen run through the converter, are exported, and must come back exactly: the same keys
(resample_filter buffers included), shapes and bits, read by the reference `safetensors`
package; kwargs that NVIDIA's constructor takes; a strict torch load_state_dict.
"""
import contextlib
import io
import json

import jax
import ml_collections
import numpy as np
import pytest

from jaxgen.commands import export_nvidia as export_command
from jaxgen.commands.common import run_main
from jaxgen.dcgan import models as dcgan_models
from jaxgen.errors import OutputError
from jaxgen.harness.checkpoint import TrainCheckpointer, save_networks, write_descriptor
from jaxgen.runs import RunError
from jaxgen.stylegan2 import export_nvidia, nvidia
from jaxgen.stylegan2.nvidia import ConversionError

safetensors_numpy = pytest.importorskip("safetensors.numpy")

XLA_FAST_COMPILE = True   # nothing golden is computed here: see tests/conftest.py

# NVIDIA's constructor defaults (training/networks.py at the fixtures' commit) for the
# settings the export spells out and the fixture configs leave to the defaults.
NVIDIA_G_DEFAULTS = dict(
    mapping_kwargs=dict(num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995, embed_features=None,
                        layer_features=None),
    synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                          architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True))
NVIDIA_D_DEFAULTS = dict(
    architecture="resnet", channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
    cmap_dim=None, block_kwargs=dict(resample_filter=[1, 3, 3, 1]),
    mapping_kwargs=dict(num_layers=8, lr_multiplier=0.01),
    epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=1))


def _merged(defaults, given):
    """`given` over `defaults`, recursively (dicts of kwargs)."""
    out = dict(defaults)
    for k, v in given.items():
        out[k] = _merged(defaults[k], v) if isinstance(v, dict) and k in defaults else v
    return out


def _fixture(fixtures_dir, name):
    cfg = json.loads((fixtures_dir / f"sg2_{name}_config.json").read_text())
    G = dict(np.load(fixtures_dir / f"sg2_{name}_G.npz"))
    D = dict(np.load(fixtures_dir / f"sg2_{name}_D.npz"))
    return cfg, G, D


def _save_workdir(path, g_kw, d_kw, nets):
    """A training workdir (run.json + checkpoints/<step>) holding these networks."""
    state = dict(g_params=nets["G"]["params"], g_buffers=nets["G"]["buffers"], d_params=nets["D"]["params"],
                 ema_params=nets["G_ema"]["params"], ema_buffers=nets["G_ema"]["buffers"])
    ck = TrainCheckpointer(path)
    ck.save(7, state, dict(tick=1))
    ck.close()
    write_descriptor(path, "stylegan2", class_names=["w", "x", "y", "z"], resolution=g_kw["img_resolution"],
                     channels=3, G_kwargs=g_kw, D_kwargs=d_kw)


def _export(name, fixtures_dir, tmp_path_factory):
    """sg2_small as a networks directory, sg2_cond as a training workdir; G_ema = 2 G, so that
    a mix-up of G and G_ema shows. Exported with the command; its stdout kept."""
    cfg, G, D = _fixture(fixtures_dir, name)
    g_kw = nvidia.generator_kwargs(cfg["G_init_kwargs"])
    d_kw = nvidia.discriminator_kwargs(cfg["D_init_kwargs"])
    _, g_vars = nvidia.generator_from_state_dict(G, cfg["G_init_kwargs"])
    _, d_vars = nvidia.discriminator_from_state_dict(D, cfg["D_init_kwargs"])
    nets = dict(G=g_vars, D=d_vars, G_ema=jax.tree_util.tree_map(lambda a: a * 2, g_vars))
    root = tmp_path_factory.mktemp(f"export_{name}")
    run = root / "run"
    if name == "small":
        save_networks(run, g_kw, d_kw, nets)
    else:
        _save_workdir(run, dict(g_kw, dtype="float32", num_lowp_res=4), dict(d_kw, dtype="float32", num_lowp_res=4),
                      nets)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert export_command.main([str(run), str(root / "out")]) == 0
    return dict(name=name, cfg=cfg, G=G, D=D, nets=nets, run=run, out=root / "out",
                stdout=stdout.getvalue(), g_kw=g_kw, d_kw=d_kw)


@pytest.fixture(scope="module")
def export_small(fixtures_dir, tmp_path_factory):
    return _export("small", fixtures_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def export_cond(fixtures_dir, tmp_path_factory):
    return _export("cond", fixtures_dir, tmp_path_factory)


@pytest.fixture(params=["small", "cond"])
def exported(request):
    return request.getfixturevalue(f"export_{request.param}")


def test_safetensors_hold_nvidia_state_dicts_exactly(exported):
    """(a) The reference reader gives the fixture state dicts: key sets, shapes, bits."""
    out, cfg = exported["out"], exported["cfg"]
    want = dict(G=exported["G"], D=exported["D"],
                G_ema={k: v if k.endswith("resample_filter") else v * 2 for k, v in exported["G"].items()})
    for net, ref in want.items():
        got = safetensors_numpy.load_file(str(out / f"{net}.safetensors"))
        assert sorted(got) == sorted(ref), f"{net}: {sorted(set(got) ^ set(ref))}"
        for k, v in ref.items():
            assert got[k].dtype == np.float32 and got[k].shape == v.shape, k
            np.testing.assert_array_equal(got[k], v, err_msg=f"{net} {k}")
    counts = dict(small=(75, 37), cond=(100, 64))[exported["name"]]
    assert (len(want["G"]), len(want["D"])) == counts
    # D: per block its own filter, conv0, conv1 and skip, the first block's fromrgb, b4.conv.
    n_blocks = len(cfg["derived"]["D_block_resolutions"])
    assert sum(k.endswith("resample_filter") for k in want["D"]) == 4 * n_blocks + 2
    d = cfg["derived"]
    assert f"G.safetensors: {counts[0]} tensors, {d['G_num_params']:,} params" in exported["stdout"]
    assert f"D.safetensors: {counts[1]} tensors, {d['D_num_params']:,} params" in exported["stdout"]


def test_kwargs_are_nvidia_constructor_kwargs(exported):
    """(b) G_kwargs.json / D_kwargs.json equal the fixture's init_kwargs (what NVIDIA's
    train.py passed to Generator/Discriminator) on every key it has. The export also spells
    out the settings that train.py left to NVIDIA's defaults (mapping lr_multiplier,
    w_avg_beta, architecture, resample_filter, use_noise, cmap_dim, D mapping_kwargs,
    mbstd_num_channels), each with NVIDIA's default value: the constructor builds the same
    network whether they are given or not, and the JSON does not depend on the defaults."""
    out, cfg = exported["out"], exported["cfg"]
    g = json.loads((out / "G_kwargs.json").read_text())
    d = json.loads((out / "D_kwargs.json").read_text())
    assert g == _merged(NVIDIA_G_DEFAULTS, cfg["G_init_kwargs"])
    assert d == _merged(NVIDIA_D_DEFAULTS, cfg["D_init_kwargs"])
    # The files say what they are (and the kwargs again) in their safetensors metadata.
    with safetensors_numpy.safe_open(str(out / "G_ema.safetensors"), "np") as f:
        meta = f.metadata()
    assert meta["class_name"] == "training.networks.Generator" and meta["network"] == "G_ema"
    assert json.loads(meta["init_kwargs"]) == g
    names = [] if exported["name"] == "small" else ["w", "x", "y", "z"]
    assert json.loads(meta["class_names"]) == names


def test_round_trip_through_the_converter(exported):
    """(c) exported state dict + exported kwargs -> nvidia.*_from_state_dict -> the run's
    variables, bit for bit; and the kwargs map back to the run's jaxgen kwargs."""
    out, nets = exported["out"], exported["nets"]
    g_kw = json.loads((out / "G_kwargs.json").read_text())
    d_kw = json.loads((out / "D_kwargs.json").read_text())
    assert nvidia.generator_kwargs(g_kw) == dict(exported["g_kw"], architecture="skip", mapping_lr_multiplier=0.01,
                                                 w_avg_beta=0.995, embed_features=None, layer_features=None,
                                                 resample_filter=(1, 3, 3, 1))
    assert nvidia.discriminator_kwargs(d_kw) == dict(exported["d_kw"], cmap_dim=None, mapping_layers=8,
                                                     mapping_lr_multiplier=0.01, mbstd_num_channels=1,
                                                     resample_filter=(1, 3, 3, 1))
    for net, kw in (("G", g_kw), ("G_ema", g_kw), ("D", d_kw)):
        sd = safetensors_numpy.load_file(str(out / f"{net}.safetensors"))
        convert = nvidia.discriminator_from_state_dict if net == "D" else nvidia.generator_from_state_dict
        _, back = convert(sd, kw)
        jax.tree_util.tree_map(np.testing.assert_array_equal, back, nets[net])
        assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(nets[net])


def _stand_in(torch, state_dict):
    """A torch module tree registering a zero parameter or buffer (NVIDIA's buffers: w_avg,
    noise_const, resample_filter) under each key of `state_dict`, with its shape: what
    NVIDIA's Generator/Discriminator register, without NVIDIA's code."""
    root = torch.nn.Module()
    for key, arr in state_dict.items():
        *path, leaf = key.split(".")
        mod = root
        for p in path:
            if p not in mod._modules:
                mod.add_module(p, torch.nn.Module())
            mod = mod._modules[p]
        t = torch.zeros(arr.shape, dtype=torch.float32)
        if leaf in export_nvidia.BUFFERS:
            mod.register_buffer(leaf, t)
        else:
            mod.register_parameter(leaf, torch.nn.Parameter(t))
    return root


def test_strict_load_state_dict_accepts_the_files(exported):
    """(d) torch's load_state_dict(strict=True) of safetensors.torch.load_file(...) into a module
    tree with the fixture's exact keys and shapes: no missing or unexpected key, the values land."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    for net, ref in (("G", exported["G"]), ("D", exported["D"])):
        module = _stand_in(torch, ref)
        n_buffers = sum(1 for _ in module.buffers())
        assert n_buffers == sum(k.rsplit(".", 1)[-1] in export_nvidia.BUFFERS for k in ref) > 0
        loaded = safetensors_torch.load_file(str(exported["out"] / f"{net}.safetensors"))
        result = module.load_state_dict(loaded, strict=True)
        assert result.missing_keys == [] and result.unexpected_keys == []
        for k, v in module.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), ref[k], err_msg=k)
        # The same load without one filter buffer is refused: the buffers are needed.
        key = next(k for k in ref if k.endswith("resample_filter"))
        with pytest.raises(RuntimeError, match=f"Missing key.*{key}"):
            _stand_in(torch, ref).load_state_dict({k: v for k, v in loaded.items() if k != key}, strict=True)


def test_filters_follow_nvidia_modules_and_precision_maps_to_fp16(fixtures_dir):
    """Which filter each buffer gets (NVIDIA builds some layers with its default taps), and
    num_fp16_res from jaxgen's dtype/num_lowp_res."""
    _, G, D = _fixture(fixtures_dir, "small")
    strip = lambda sd: {k: v for k, v in sd.items() if not k.endswith("resample_filter")}  # noqa: E731
    g = export_nvidia.add_resample_filters(strip(G), "G", taps=(1, 2, 1))
    d = export_nvidia.add_resample_filters(strip(D), "D", taps=(1, 2, 1))
    assert set(g) == set(G) and set(d) == set(D)
    own = {k for k, v in {**g, **d}.items() if k.endswith("resample_filter") and v.shape == (3, 3)}
    assert own == ({f"synthesis.b{r}.resample_filter" for r in (4, 8, 16, 32)}
                   | {f"synthesis.b{r}.conv0.resample_filter" for r in (8, 16, 32)}
                   | {f"b{r}{n}.resample_filter" for r in (8, 16, 32) for n in ("", ".conv1", ".skip")})
    np.testing.assert_array_equal(g["synthesis.b8.conv0.resample_filter"], np.outer([1, 2, 1], [1, 2, 1]) / 16)
    np.testing.assert_array_equal(g["synthesis.b8.conv1.resample_filter"], G["synthesis.b8.conv1.resample_filter"])
    base = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3)

    def fp16(**kw):
        return export_nvidia.nvidia_generator_kwargs(dict(base, **kw))["synthesis_kwargs"]["num_fp16_res"]

    assert [fp16(dtype="float32", num_lowp_res=4), fp16(dtype="bfloat16", num_lowp_res=4),
            fp16(dtype="float16", num_lowp_res=2), fp16(dtype="float16", num_lowp_res=None),
            fp16(num_lowp_res=4), fp16()] == [0, 0, 2, 4, 4, 0]


def test_write_safetensors_layout(tmp_path):
    """Mixed dtypes, a scalar and metadata read back by the reference reader; header padded to 8."""
    tensors = dict(b=np.arange(6, dtype=np.float32).reshape(2, 3), a=np.float32(2.5).reshape(()),
                   i=np.array([1, -2], np.int64), u=np.array([7], np.uint8))
    path = export_nvidia.write_safetensors(tmp_path / "t.safetensors", tensors, dict(k="v"))
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and len(raw) == 8 + n + 6 * 4 + 4 + 2 * 8 + 1
    got = safetensors_numpy.load_file(str(path))
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    with safetensors_numpy.safe_open(str(path), "np") as f:
        assert f.metadata() == dict(k="v")


def test_refusals(export_small, tmp_path, capsys):
    """(e) One-line refusals, each before any output folder is made or touched."""
    exported = export_small
    run = str(exported["run"])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        run_main(lambda: export_command.main([run, str(foreign)]))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: OUT (the 2nd argument) ") and "not written by jaxgen" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    # A second export into the same folder would mix two runs' files.
    with pytest.raises(OutputError, match="already holds an export"):
        export_command.main([run, str(exported["out"])])
    # A DCGAN run is not a StyleGAN2 run.
    cfg = ml_collections.ConfigDict(dict(z_dim=8, embed_dim=4, widths=(16, 8)))
    gk, dk = dcgan_models.model_kwargs(cfg, 16, 1, 3)
    G, D = dcgan_models.build(gk, dk)
    c = np.zeros([2], np.int32)
    zeros = lambda tree: jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), tree)  # noqa: E731
    g = zeros(jax.eval_shape(G.init, jax.random.key(0), np.zeros([2, 8], np.float32), c)["params"])
    d = zeros(jax.eval_shape(D.init, jax.random.key(1), np.zeros([2, 16, 16, 1], np.float32), c)["params"])
    ck = TrainCheckpointer(tmp_path / "dcgan")
    ck.save(1, dict(step=np.int32(1), g_params=g, g_teacher=g, d_params=d), dict(tick=1))
    ck.close()
    write_descriptor(tmp_path / "dcgan", "dcgan", class_names=["a", "b", "c"], resolution=16, channels=1,
                     G_kwargs=gk, D_kwargs=dk)
    with pytest.raises(RunError, match="is a dcgan run; expected stylegan2"):
        export_command.main([str(tmp_path / "dcgan"), str(tmp_path / "out1")])
    # Weights that do not fit the run's kwargs (3 mapping layers claimed, 2 stored).
    bad = tmp_path / "bad"
    save_networks(bad, dict(exported["g_kw"], mapping_layers=3), exported["d_kw"], exported["nets"])
    with pytest.raises(ConversionError, match="missing key mapping.fc2.weight"):
        export_command.main([str(bad), str(tmp_path / "out2")])
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
