"""TensorFlow-era NVIDIA pickles (StyleGAN2 / StyleGAN2-ADA TF, e.g. stylegan2-ffhq-config-f.pkl).

The test writes such a pickle itself: a `(G, D, Gs)` tuple of objects whose class is
`dnnlib.tflib.network.Network` and whose state is what that class's `__getstate__`
returns (version, name, static_kwargs, components, build_module_src, build_func_name,
variables), holding the sg2_small fixture weights under TF names and layouts. The
inverse mapping below is written out plainly, independently of jaxgen.stylegan2.nvidia_tf.
The converted G must give NVIDIA's golden images, the converted G and D the same
variables as NVIDIA's own state dicts, and the embedded build source (which would
write a marker and raise) must never run.
"""
import contextlib
import hashlib
import io
import json
import pickle
import sys
import types

import jax
import numpy as np
import pytest

from jaxgen.runs import open_run
from jaxgen.commands import pkl_to_orbax as convert_command
from jaxgen.stylegan2.nvidia import ConversionError, discriminator_from_state_dict, generator_from_state_dict
from jaxgen.stylegan2.nvidia_tf import (discriminator_from_tf, discriminator_state_dict, generator_init_kwargs,
                                        generator_state_dict)
from jaxgen.utils.pickle_records import InvalidCheckpointError, TFNetwork
from jaxgen.utils.safe_pickle import is_tf_network_pkl, load_network_pkl, load_tf_network_pkl



def resolutions(sd, prefix):
    """Block resolutions above 4x4: r of every `<prefix>b<r>.conv0.weight` (sg2_small: 8, 16, 32)."""
    keys = [k[len(prefix):] for k in sd if k.startswith(prefix + "b") and k.endswith(".conv0.weight")]
    return sorted(int(k.split(".")[0][1:]) for k in keys)


class Network:
    """Pickles like NVIDIA's dnnlib.tflib.network.Network: NEWOBJ, then BUILD with this state."""

    def __init__(self, state):
        self.state = state

    def __getstate__(self):
        return self.state


Network.__module__ = "dnnlib.tflib.network"


def build_src(marker):
    """Module source a real unpickler would exec: it leaves a marker and fails loudly."""
    return (f"open({str(marker)!r}, 'w').write('TF build_module_src ran')\n"
            "raise RuntimeError('build_module_src must never be executed')\n")


def network(name, func, static, variables, src, components=None):
    return Network(dict(version=4, name=name, static_kwargs=dict(static), components=dict(components or {}),
                        build_module_src=src, build_func_name=func, variables=list(variables)))


def hwio(w):
    """PyTorch OIHW -> TF HWIO."""
    return w.transpose(2, 3, 1, 0)


def tf_layer(sd, tf_name, pt_name, flip=False):
    """One modulated conv / ToRGB layer of G under TF names (TF adds 1 to mod_bias at run time)."""
    w = hwio(sd[pt_name + ".weight"])
    out = [(tf_name + "/weight", w[::-1, ::-1] if flip else w), (tf_name + "/bias", sd[pt_name + ".bias"]),
           (tf_name + "/mod_weight", sd[pt_name + ".affine.weight"].T),
           (tf_name + "/mod_bias", sd[pt_name + ".affine.bias"] - np.float32(1))]
    if pt_name + ".noise_strength" in sd:  # TF returns scalars as numpy scalars
        out.append((tf_name + "/noise_strength", np.float32(sd[pt_name + ".noise_strength"])))
    return out


def tf_mapping(sd, embed, dense):
    """Label embedding and mapping layers: [in, out] dense weights under TF names."""
    out = [(f"{embed}/weight", sd["mapping.embed.weight"].T), (f"{embed}/bias", sd["mapping.embed.bias"])] \
        if "mapping.embed.weight" in sd else []
    for i in range(sum(k.startswith("mapping.fc") and k.endswith(".weight") for k in sd)):
        out += [(f"{dense}{i}/weight", sd[f"mapping.fc{i}.weight"].T), (f"{dense}{i}/bias", sd[f"mapping.fc{i}.bias"])]
    return out


def tf_generator(sd, name, static, src):
    """NVIDIA G state dict -> TF G_main network with mapping and synthesis components."""
    mapping = tf_mapping(sd, "LabelEmbed", "Dense")
    noise = [sd["synthesis.b4.conv1.noise_const"]]
    layers = [("4x4/Const/const", sd["synthesis.b4.const"][None])]
    layers += tf_layer(sd, "4x4/Conv", "synthesis.b4.conv1") + tf_layer(sd, "4x4/ToRGB", "synthesis.b4.torgb")
    for r in resolutions(sd, "synthesis."):
        noise += [sd[f"synthesis.b{r}.conv0.noise_const"], sd[f"synthesis.b{r}.conv1.noise_const"]]
        layers += tf_layer(sd, f"{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", flip=True)
        layers += tf_layer(sd, f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1")
        layers += tf_layer(sd, f"{r}x{r}/ToRGB", f"synthesis.b{r}.torgb")
    synthesis = [(f"noise{i}", n[None, None]) for i, n in enumerate(noise)] + layers
    comps = dict(mapping=network("G_mapping", "G_mapping", static, mapping, src),
                 synthesis=network("G_synthesis", "G_synthesis_stylegan2", static, synthesis, src))
    own = [("lod", np.float32(0)), ("dlatent_avg", sd["mapping.w_avg"])]
    return network(name, "G_main", static, own, src, comps)


def tf_discriminator(sd, static, src):
    """NVIDIA D state dict (resnet) -> TF D_stylegan2 / D_main network."""
    res = resolutions(sd, "")
    top = f"{res[-1]}x{res[-1]}/FromRGB"
    own = tf_mapping(sd, "LabelEmbed", "Mapping")
    own += [(top + "/weight", hwio(sd[f"b{res[-1]}.fromrgb.weight"])), (top + "/bias", sd[f"b{res[-1]}.fromrgb.bias"])]
    for r in reversed(res):
        own += [(f"{r}x{r}/Conv0/weight", hwio(sd[f"b{r}.conv0.weight"])),
                (f"{r}x{r}/Conv0/bias", sd[f"b{r}.conv0.bias"]),
                (f"{r}x{r}/Conv1_down/weight", hwio(sd[f"b{r}.conv1.weight"])),
                (f"{r}x{r}/Conv1_down/bias", sd[f"b{r}.conv1.bias"]),
                (f"{r}x{r}/Skip/weight", hwio(sd[f"b{r}.skip.weight"]))]
    own += [("4x4/Conv/weight", hwio(sd["b4.conv.weight"])), ("4x4/Conv/bias", sd["b4.conv.bias"]),
            ("4x4/Dense0/weight", sd["b4.fc.weight"].T), ("4x4/Dense0/bias", sd["b4.fc.bias"]),
            ("Output/weight", sd["b4.out.weight"].T), ("Output/bias", sd["b4.out.bias"])]
    return network("D", "D_stylegan2", static, own, src)


@contextlib.contextmanager
def fake_tflib():
    """`dnnlib.tflib.network.Network` importable (for pickle.dump) only inside the block."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["dnnlib.tflib.network"].Network = Network
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def dump_bytes(obj, protocol=4):
    with fake_tflib():
        return pickle.dumps(obj, protocol=protocol)


def dump(obj, path, protocol=4):
    path.write_bytes(dump_bytes(obj, protocol))
    return path


class TFPickle:
    """The fixture networks as TF pickles (G's dlatent_avg zeroed, so G and Gs differ)."""

    def __init__(self, root, fixtures_dir):
        cfg = json.loads((fixtures_dir / "sg2_small_config.json").read_text())
        g, s = cfg["G_init_kwargs"], cfg["G_init_kwargs"]["synthesis_kwargs"]
        self.G_sd = dict(np.load(fixtures_dir / "sg2_small_G.npz"))
        self.D_sd = dict(np.load(fixtures_dir / "sg2_small_D.npz"))
        self.marker, self.root = root / "build_src_ran.txt", root
        self.src = build_src(self.marker)
        common = dict(num_channels=3, resolution=g["img_resolution"], label_size=g["c_dim"],
                      fmap_base=s["channel_base"] // 2, fmap_max=s["channel_max"])
        self.G_static = dict(common, latent_size=g["z_dim"], dlatent_size=g["w_dim"],
                             mapping_layers=g["mapping_kwargs"]["num_layers"], truncation_psi=0.5)
        self.D_static = dict(common, architecture="resnet", mbstd_group_size=4)
        self.path = dump(self.nets(), root / "stylegan2-small-tf.pkl")

    def nets(self, g_static=None, g_extra=(), gs=None):
        g_sd = dict(self.G_sd, **{"mapping.w_avg": np.zeros_like(self.G_sd["mapping.w_avg"])})
        G = tf_generator(g_sd, "G", g_static or self.G_static, self.src)
        G.state["variables"] += list(g_extra)
        D = tf_discriminator(self.D_sd, self.D_static, self.src)
        D.state.update(version=5, input_names=["images_in", "labels_in"])  # as StyleGAN2-ADA TF writes it
        return G, D, gs if gs is not None else tf_generator(self.G_sd, "Gs", self.G_static, self.src)


@pytest.fixture(scope="module")
def tf_pkl(tmp_path_factory, fixtures_dir):
    return TFPickle(tmp_path_factory.mktemp("tf_pickle"), fixtures_dir)


def without_filters(sd):
    return {k: v for k, v in sd.items() if not k.endswith("resample_filter")}


def assert_same_state_dict(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == np.float32 and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_tf_pickle_loads_inert_and_maps_to_nvidia_state_dicts(tf_pkl, tmp_path):
    assert is_tf_network_pkl(tf_pkl.path)
    assert not is_tf_network_pkl(io.BytesIO(pickle.dumps({"G": None, "training_set_kwargs": None})))
    assert not is_tf_network_pkl(io.BytesIO(b"PK\x03\x04 a zip file, not a pickle"))
    with pytest.raises(InvalidCheckpointError, match="TensorFlow-era"):
        load_network_pkl(tf_pkl.path)
    nets = load_tf_network_pkl(tf_pkl.path)
    G = nets["G"]
    assert isinstance(G, TFNetwork) and G.name == "G" and G.build_func_name == "G_main"
    assert sorted(G.components) == ["mapping", "synthesis"] and G.version == 4
    assert G.build_module_src_sha256 == hashlib.sha256(tf_pkl.src.encode()).hexdigest()
    assert not any(isinstance(v, str) and "never be executed" in v for v in vars(G).values())
    assert G.components["synthesis"].variables["noise6"].shape == (1, 1, 32, 32)
    # Gs -> NVIDIA's G_ema state dict and D's, exactly; G kept its own (zeroed) w_avg.
    assert_same_state_dict(generator_state_dict(nets["Gs"]), without_filters(tf_pkl.G_sd))
    assert_same_state_dict(discriminator_state_dict(nets["D"]), without_filters(tf_pkl.D_sd))
    assert not generator_state_dict(G)["mapping.w_avg"].any()
    kw = generator_init_kwargs(G)
    assert kw["synthesis_kwargs"]["channel_base"] == 1024 and kw["mapping_kwargs"]["num_layers"] == 2
    # Pickle protocol 0 (copyreg._reconstructor instead of NEWOBJ) reads the same.
    old = load_tf_network_pkl(dump(tf_pkl.nets(), tmp_path / "proto0.pkl", protocol=0))
    assert is_tf_network_pkl(tmp_path / "proto0.pkl")
    assert_same_state_dict(generator_state_dict(old["Gs"]), without_filters(tf_pkl.G_sd))
    assert not tf_pkl.marker.exists(), "the pickle's build_module_src ran"


def test_tf_pickle_reproduces_nvidia_golden(tf_pkl, fixtures_dir, tmp_path):
    out = tmp_path / "converted"
    assert convert_command.main([str(tf_pkl.path), str(out), "--no_preview"]) == 0
    run, saved = open_run(tf_pkl.path), open_run(out)
    jax.tree_util.tree_map(np.testing.assert_array_equal, saved.networks, run.networks)
    assert run.kind == "stylegan2" and run.resolution == 32 and run.info["D_kwargs"]["mbstd_group_size"] == 4
    assert not np.asarray(run.networks["G"]["buffers"]["mapping"]["w_avg"]).any()  # G is G, G_ema is Gs
    gold = np.load(fixtures_dir / "sg2_small_golden.npz")
    img = run.generate(gold["z"], psi=1.0, noise_mode="const")
    np.testing.assert_allclose(img, gold["img_const"].transpose(0, 2, 3, 1), atol=1e-4)
    # D (and G_ema): the very variables the PyTorch-snapshot path gives NVIDIA's own state
    # dicts, whose golden logits test_parity checks; compiling D again here would double the time.
    cfg = json.loads((fixtures_dir / "sg2_small_config.json").read_text())
    D_ref, d_vars = discriminator_from_state_dict(tf_pkl.D_sd, cfg["D_init_kwargs"])
    G_ref, g_vars = generator_from_state_dict(tf_pkl.G_sd, cfg["G_init_kwargs"])
    # Same configs, field by field; D is unconditional, so legacy.py's D mapping defaults
    # (0 layers, lr 0.1, never built) are the only difference from the PyTorch snapshot's.
    assert run.model == G_ref
    assert run.discriminator.clone(mapping_layers=8, mapping_lr_multiplier=0.01) == D_ref
    jax.tree_util.tree_map(np.testing.assert_array_equal, (run.d_variables, run.variables), (d_vars, g_vars))
    assert not tf_pkl.marker.exists(), "the pickle's build_module_src ran"


def _refused(tf_pkl, name, nets, error, match, tmp_path):
    """`pkl_to_orbax` refuses the pickle in one line naming the problem and writes nothing."""
    path = dump(nets, tf_pkl.root / name)
    out = tmp_path / name.replace(".pkl", "_out")
    with pytest.raises(error, match=match) as exc:
        convert_command.main([str(path), str(out)])
    assert "\n" not in str(exc.value) and not out.exists()


def test_tf_pickle_refusals_are_one_line(tf_pkl, tmp_path):
    extra = [("Dense9x/weight", np.zeros([2, 2], np.float32))]
    G, D, Gs = tf_pkl.nets()
    G.state["components"]["mapping"].state["variables"] += extra
    _refused(tf_pkl, "extra_var.pkl", (G, D, Gs), ConversionError,
             r"TF network G: variable\(s\) with no StyleGAN2 counterpart: mapping/Dense9x/weight$", tmp_path)
    _refused(tf_pkl, "lod.pkl", tf_pkl.nets(g_extra=[("ToRGB_lod1/weight", np.zeros([1, 1, 2, 3], np.float32))]),
             ConversionError, r"ToRGB_lod1/weight \(progressive-growing", tmp_path)
    _refused(tf_pkl, "kwarg.pkl", tf_pkl.nets(g_static=dict(tf_pkl.G_static, fmap_decay=1)), ConversionError,
             r"TF network G: unsupported static kwarg\(s\) fmap_decay \(built by G_main\)", tmp_path)
    _refused(tf_pkl, "not_network.pkl", tf_pkl.nets(gs={"variables": []}), InvalidCheckpointError,
             r"entry Gs of the \(G, D, Gs\) tuple is a dict, not a dnnlib\.tflib\.network\.Network", tmp_path)
    G, D, Gs = tf_pkl.nets()
    G.state["components"]["mapping"] = {"variables": []}
    _refused(tf_pkl, "component.pkl", (G, D, Gs), InvalidCheckpointError,
             r"TF network 'G': component 'mapping' is a dict, not a dnnlib", tmp_path)
    assert not tf_pkl.marker.exists(), "the pickle's build_module_src ran"


def test_conditional_tf_names_map_to_nvidia_state_dicts(fixtures_dir):
    """sg2_cond: G's mapping/LabelEmbed and D's LabelEmbed, Mapping{i} and [64, 64] Output."""
    cfg = json.loads((fixtures_dir / "sg2_cond_config.json").read_text())
    G_sd, D_sd = (dict(np.load(fixtures_dir / f"sg2_cond_{n}.npz")) for n in "GD")
    src = build_src(fixtures_dir / "never_written")
    d_kw = cfg["D_init_kwargs"]
    D_static = dict(num_channels=3, resolution=64, label_size=4, fmap_base=d_kw["channel_base"] // 2,
                    fmap_max=d_kw["channel_max"], mapping_layers=8, mapping_lrmul=0.01, mbstd_group_size=4)
    G = tf_generator(G_sd, "G", {}, src)
    nets = load_tf_network_pkl(io.BytesIO(dump_bytes((G, tf_discriminator(D_sd, D_static, src), G))))
    assert_same_state_dict(generator_state_dict(nets["G"]), without_filters(G_sd))
    assert_same_state_dict(discriminator_state_dict(nets["D"]), without_filters(D_sd))
    D, d_vars, _ = discriminator_from_tf(nets["D"])
    D_ref, ref_vars = discriminator_from_state_dict(D_sd, d_kw)
    assert D == D_ref and D.mapping_layers == 8 and D.c_dim == 4
    jax.tree_util.tree_map(np.testing.assert_array_equal, d_vars, ref_vars)
