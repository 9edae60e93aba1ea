"""Official-snapshot conversion: a StyleGAN2-ADA-style .pkl holding the fixture
weights -> orbax networks checkpoint -> the same images as NVIDIA's code, with
the snapshot's embedded source never executed."""
import json
import logging
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest

from fake_nvidia import write_fake_packages
from jaxgen.commands import pkl_to_orbax as convert_command
from jaxgen.stylegan2 import pkl_to_orbax
from jaxgen.stylegan2 import networks
from jaxgen.runs import open_run
from jaxgen.errors import ConfigError
from jaxgen.stylegan2.transfer import transfer
from jaxgen.utils.trees import flat_paths

FAKE_NETWORKS = '''\
import torch
from torch_utils import persistence

if __name__ != "fake_sg2":  # true only when a loader exec's the embedded source
    open(MARKER, "w").write("embedded code ran")

@persistence.persistent_class
class Node(torch.nn.Module):
    pass

@persistence.persistent_class
class Net(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()

BUFFERS = ("w_avg", "noise_const", "resample_filter")

def fill(root, state_dict):
    """Give `root` submodules/parameters/buffers whose state_dict() is `state_dict`."""
    for key, arr in state_dict.items():
        *path, leaf = key.split(".")
        mod = root
        for p in path:
            if p not in mod._modules:
                mod.add_module(p, Node())
            mod = mod._modules[p]
        t = torch.from_numpy(arr.copy())
        if leaf in BUFFERS:
            mod.register_buffer(leaf, t)
        else:
            mod.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
    return root
'''


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, fixtures_dir):
    torch = pytest.importorskip("torch")
    del torch
    root = tmp_path_factory.mktemp("nvidia")
    pkgs, marker = write_fake_packages(root / "pkgs"), root / "marker.txt"
    (pkgs / "fake_sg2.py").write_text(f"MARKER = {str(marker)!r}\n" + FAKE_NETWORKS)
    cfg = json.loads((fixtures_dir / "sg2_small_config.json").read_text())
    sys.path.insert(0, str(pkgs))
    try:
        import dnnlib
        import fake_sg2
        G_sd = dict(np.load(fixtures_dir / "sg2_small_G.npz"))
        D_sd = dict(np.load(fixtures_dir / "sg2_small_D.npz"))
        G = fake_sg2.fill(fake_sg2.Net(**cfg["G_init_kwargs"]), G_sd)
        G_ema = fake_sg2.fill(fake_sg2.Net(**cfg["G_init_kwargs"]), G_sd)
        D = fake_sg2.fill(fake_sg2.Net(**cfg["D_init_kwargs"]), D_sd)
        path = root / "network-snapshot-000100.pkl"
        with open(path, "wb") as f:
            pickle.dump(dict(G=G, D=D, G_ema=G_ema, augment_pipe=None,
                             training_set_kwargs=dnnlib.EasyDict(resolution=32)), f)
    finally:
        sys.path.remove(str(pkgs))
        for name in ("dnnlib", "dnnlib.util", "torch_utils", "torch_utils.persistence", "fake_sg2"):
            sys.modules.pop(name, None)
    return dict(path=path, pkgs=pkgs, marker=marker, cfg=cfg)


def test_snapshot_would_run_code_under_plain_pickle(snapshot):
    code = (f"import pickle, sys; sys.path.insert(0, {str(snapshot['pkgs'])!r}); "
            f"pickle.load(open({str(snapshot['path'])!r}, 'rb'))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert snapshot["marker"].read_text() == "embedded code ran"
    snapshot["marker"].unlink()


def test_pkl_to_orbax_reproduces_nvidia_images(snapshot, fixtures_dir, tmp_path, capsys):
    out = tmp_path / "converted"
    assert convert_command.main([str(snapshot["path"]), str(out)]) == 0
    assert not snapshot["marker"].exists(), "the snapshot's embedded code ran"
    assert "converted" in capsys.readouterr().out
    assert (out / "preview.png").stat().st_size > 0
    run = open_run(out)
    info, nets = run.info, run.networks
    assert run.kind == "stylegan2" and run.resolution == 32 and info["G_kwargs"]["mapping_layers"] == 2
    G, D = networks.build(info["G_kwargs"], info["D_kwargs"])
    # The .pkl itself opens the same way, to the same networks.
    direct = open_run(snapshot["path"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, direct.networks, nets)
    gold = np.load(fixtures_dir / "sg2_small_golden.npz")
    img = G.apply(nets["G_ema"], gold["z"], gold["c"], noise_mode="const")
    np.testing.assert_allclose(np.asarray(img), gold["img_const"].transpose(0, 2, 3, 1), atol=1e-4)
    logits = D.apply(nets["D"], gold["img_const"].transpose(0, 2, 3, 1), gold["c"])
    np.testing.assert_allclose(np.asarray(logits), gold["logits_img_const"], atol=1e-4)
    # A second conversion into the same directory is refused, not silently merged.
    with pytest.raises(ValueError, match="already exists"):
        convert_command.main([str(snapshot["path"]), str(out), "--no-preview"])


def test_transfer_copies_every_matching_array(snapshot, fixtures_dir, caplog):
    caplog.set_level(logging.INFO, logger="jaxgen")
    cfg = snapshot["cfg"]
    G, D = networks.build(pkl_to_orbax.generator_kwargs(cfg["G_init_kwargs"]),
                          pkl_to_orbax.discriminator_kwargs(cfg["D_init_kwargs"]))
    g_vars, d_vars = networks.init_variables(G, D, jax.random.key(0))
    g2, d2, ema2, report = transfer(g_vars, d_vars, str(snapshot["path"]))
    ref = dict(np.load(fixtures_dir / "sg2_small_G.npz"))
    np.testing.assert_array_equal(np.asarray(g2["params"]["mapping"]["fc0"]["weight"]),
                                  ref["mapping.fc0.weight"].T)
    np.testing.assert_array_equal(np.asarray(ema2["buffers"]["mapping"]["w_avg"]), ref["mapping.w_avg"])
    assert not snapshot["marker"].exists()
    n_g = len(jax.tree_util.tree_leaves(g_vars))
    assert report["G"]["copied"] == report["G"]["arrays"] == n_g and report["G"]["share"] == 1.0
    assert report["D"]["share"] == 1.0 and not report["D"]["shape_mismatch"] + report["D"]["not_in_source"]
    assert caplog.messages[0].startswith(f"transfer G: {n_g}/{n_g} arrays, 100.0% of ")


def test_transfer_to_other_widths_fails_loudly_unless_allowed(snapshot):
    """NVIDIA's copy would start a near-fresh network here without a word (issue #279)."""
    cfg = snapshot["cfg"]
    g_kw = pkl_to_orbax.generator_kwargs(cfg["G_init_kwargs"])
    g_kw = dict(g_kw, channel_max=16)     # narrower synthesis layers than the snapshot's 64
    G, D = networks.build(g_kw, pkl_to_orbax.discriminator_kwargs(cfg["D_init_kwargs"]))
    g_vars, d_vars = networks.init_variables(G, D, jax.random.key(0))
    with pytest.raises(ConfigError, match=r"only \d+\.\d% of G's parameters transfer \(e\.g\. params/synthesis/"):
        transfer(g_vars, d_vars, str(snapshot["path"]))
    _, _, _, report = transfer(g_vars, d_vars, str(snapshot["path"]), min_share=0.0)
    r = report["G"]
    sizes = {k: v.size for k, v in flat_paths(g_vars).items()}
    copied = r["arrays"] - len(r["shape_mismatch"]) - len(r["not_in_source"])
    assert r["copied"] == copied and 0 < r["share"] < 0.9 and r["shape_mismatch"]
    skipped = {m.split(" ")[0] for m in r["shape_mismatch"]} | set(r["not_in_source"])
    assert r["share"] == pytest.approx(1 - sum(sizes[k] for k in skipped) / sum(sizes.values()))
