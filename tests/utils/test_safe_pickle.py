"""Restricted loader for torch.save files and NVIDIA-style network pickles.

torch (CPU) is used here only to write genuine files; jaxgen.utils.safe_pickle
itself never imports it.  The NVIDIA-style snapshot is produced with small
stand-in ``torch_utils``/``dnnlib`` packages written by this test, whose
persistence hook exec's the embedded module source exactly like the real one.
"""
import collections
import hashlib
import io
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from fake_nvidia import write_fake_packages
from jaxgen.utils.pickle_records import InvalidCheckpointError, PersistentModule, TorchModule, UnsafePickleError
from jaxgen.utils.safe_pickle import load_network_pkl, load_torch_file


def _state_dict():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    bn = torch.nn.BatchNorm2d(4)
    bn.running_mean.uniform_()
    grid = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    sd = collections.OrderedDict()
    sd["conv.weight"], sd["conv.bias"] = conv.weight.detach(), conv.bias.detach()
    sd.update({f"bn.{k}": v for k, v in bn.state_dict().items()})  # incl. int64 num_batches_tracked
    sd["half"] = torch.randn(7).half()
    sd["bf16"] = torch.randn(3, 2).bfloat16()
    sd["f64"] = torch.randn(2, 2, dtype=torch.float64)
    sd["i32"] = torch.arange(-3, 3, dtype=torch.int32)
    sd["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    sd["mask"] = torch.tensor([True, False, True])
    sd["transposed"] = grid.t()  # non-contiguous
    sd["view"] = grid.view(-1)[7:19].view(3, 4)  # storage offset 7
    sd["strided"] = grid[1::2, ::3]  # offset and non-unit strides
    sd["scalar"] = torch.tensor(2.5)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 3))
    return sd


def _as_numpy(t):
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_save_round_trip(tmp_path, zip_format):
    sd = _state_dict()
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": sd, "epoch": 3, "names": ["a", ("b", None)], "lr": 0.5}, path,
               _use_new_zipfile_serialization=zip_format)
    out = load_torch_file(path)
    assert (out["epoch"], out["names"], out["lr"]) == (3, ["a", ("b", None)], 0.5)
    got = out["state_dict"]
    assert type(got) is collections.OrderedDict and list(got) == list(sd)
    for key, tensor in sd.items():
        arr, want = got[key], _as_numpy(tensor)
        assert type(arr) is np.ndarray and arr.shape == tuple(tensor.shape), key
        if tensor.dtype == torch.bfloat16:
            assert arr.dtype.name == "bfloat16"
            arr = arr.astype(np.float32)
        assert arr.dtype == want.dtype, key
        np.testing.assert_array_equal(arr, want, err_msg=key)
    assert got["bn.num_batches_tracked"].dtype == np.int64 and got["bn.num_batches_tracked"].shape == ()
    # the loaded arrays are independent copies (no aliasing into storages)
    assert got["view"].flags.c_contiguous and got["view"].flags.owndata


def test_file_object_and_inception_style_state_dict():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8, eps=1e-3))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    got = load_torch_file(buf)
    want = net.state_dict()
    assert list(got) == list(want)
    for key, tensor in want.items():
        np.testing.assert_array_equal(got[key], tensor.numpy())


_NETWORKS = '''\
import numpy as np
import torch
import dnnlib
from torch_utils import persistence

if __name__ != "fake_networks":  # only true when the embedded source is exec'd on load
    open(MARKER, "w").write("embedded code ran")

@persistence.persistent_class
class Layer(torch.nn.Module):
    def __init__(self, cin, cout, lr_multiplier=1.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(cout, cin))
        self.bias = torch.nn.Parameter(torch.randn(cout).half())
        self.register_parameter("unused", None)
        self.register_buffer("scale", torch.randn(cin, cout).t())  # non-contiguous buffer
        self.register_buffer("scratch", torch.ones(2), persistent=False)
        self.weight_gain = lr_multiplier / np.sqrt(cin)  # a numpy scalar, as in NVIDIA's layers

@persistence.persistent_class
class Net(torch.nn.Module):
    def __init__(self, z_dim, widths, mapping_kwargs=None):
        super().__init__()
        self.z_dim = z_dim
        self.blocks = torch.nn.ModuleList(
            [Layer(a, b, lr_multiplier=0.01) for a, b in zip([z_dim] + widths[:-1], widths)])
        self.act = torch.nn.LeakyReLU(0.2)
        self.head = torch.nn.Linear(widths[-1], 1)
        self.register_buffer("w_avg", torch.randn(widths[-1]))
        self.register_buffer("steps", torch.tensor(12345, dtype=torch.int64))
'''


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """An NVIDIA-style snapshot pickle whose embedded module source writes a marker file."""
    root = tmp_path_factory.mktemp("snapshot")
    pkgs, marker = root / "pkgs", root / "marker.txt"
    write_fake_packages(pkgs)
    (pkgs / "fake_networks.py").write_text(f"MARKER = {str(marker)!r}\n" + _NETWORKS)
    sys.path.insert(0, str(pkgs))
    try:
        import dnnlib
        import fake_networks

        torch.manual_seed(2)
        kwargs = dict(z_dim=4, widths=[5, 3], mapping_kwargs=dnnlib.EasyDict(num_layers=2, lr=0.01))
        nets = {name: fake_networks.Net(**kwargs).eval().requires_grad_(False)
                for name in ("G", "D", "G_ema")}
        data = dict(G=nets["G"], D=nets["D"], G_ema=nets["G_ema"], augment_pipe=None,
                    training_set_kwargs=dnnlib.EasyDict(path="faces.zip", resolution=8,
                                                        class_name="training.dataset.ImageFolderDataset"))
        path = root / "network-snapshot-000000.pkl"
        with open(path, "wb") as f:
            pickle.dump(data, f)
        src = (pkgs / "fake_networks.py").read_text()
        yield dict(path=path, pkgs=pkgs, marker=marker, nets=nets, kwargs=kwargs, src=src)
    finally:
        sys.path.remove(str(pkgs))
        for name in ("dnnlib", "dnnlib.util", "torch_utils", "torch_utils.persistence", "fake_networks"):
            sys.modules.pop(name, None)


def test_plain_pickle_would_run_embedded_code(snapshot):
    assert not snapshot["marker"].exists()
    code = f"import pickle, sys; sys.path.insert(0, {str(snapshot['pkgs'])!r}); " \
           f"pickle.load(open({str(snapshot['path'])!r}, 'rb'))"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert snapshot["marker"].read_text() == "embedded code ran"
    snapshot["marker"].unlink()


def test_load_network_pkl_without_running_code(snapshot):
    data = load_network_pkl(snapshot["path"])
    assert not snapshot["marker"].exists()
    assert list(data) == ["G", "D", "G_ema", "augment_pipe", "training_set_kwargs"]
    assert data["augment_pipe"] is None
    assert type(data["training_set_kwargs"]) is dict
    assert data["training_set_kwargs"] == dict(path="faces.zip", resolution=8,
                                               class_name="training.dataset.ImageFolderDataset")
    for name in ("G", "D", "G_ema"):
        rec, net = data[name], snapshot["nets"][name]
        assert isinstance(rec, PersistentModule) and rec.class_name == "Net"
        assert rec.module_src_sha256 == hashlib.sha256(snapshot["src"].encode()).hexdigest()
        assert rec.module_src_len == len(snapshot["src"])
        assert rec.init_args == ()
        assert rec.init_kwargs == snapshot["kwargs"] == net.init_kwargs
        assert type(rec.init_kwargs["mapping_kwargs"]) is dict
        want, got = net.state_dict(), rec.state_dict()
        assert list(got) == list(want)  # same keys, same order; no 'unused'/'scratch'
        assert "blocks.0.scratch" not in got and "blocks.0.unused" not in got
        for key, tensor in want.items():
            assert got[key].dtype == tensor.numpy().dtype, key
            np.testing.assert_array_equal(got[key], tensor.numpy(), err_msg=key)
        blocks = rec.state["_modules"]["blocks"]
        assert isinstance(blocks, TorchModule)
        assert blocks.class_name == "torch.nn.modules.container.ModuleList"
        layer = blocks.state["_modules"]["0"]
        assert layer.class_name == "Layer" and layer.init_kwargs == {"lr_multiplier": 0.01}
        assert layer.state["weight_gain"] == pytest.approx(0.01 / np.sqrt(4))
        assert rec.state["z_dim"] == 4
    assert not snapshot["marker"].exists()


class _Reduce:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_pickles(marker):
    cmd = f"touch {marker}"
    manual = b"cos\nsystem\n(" + pickle.dumps(cmd, protocol=0)[:-1] + b"tR."  # os.system(cmd)
    return {
        "os.system": manual,
        "builtins.eval": pickle.dumps(_Reduce(eval, f"open({str(marker)!r}, 'w')")),
        "subprocess.Popen": pickle.dumps({"G": _Reduce(subprocess.Popen, ["touch", str(marker)])}),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_malicious_globals_are_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    blob = _evil_pickles(marker)[name]
    path = tmp_path / "evil.pkl"
    path.write_bytes(blob)
    with pytest.raises(UnsafePickleError, match=f"'{name}'") as info:
        load_network_pkl(path)
    assert str(path) in str(info.value) and "not a plain weights file" in str(info.value)
    assert "state dict" in str(info.value)
    # the same payload inside a torch.save file
    evil = _Reduce(eval, f"open({str(marker)!r}, 'w')") if name == "builtins.eval" else \
        _Reduce(subprocess.Popen, ["touch", str(marker)])
    for zip_format in (True, False):
        torch.save({"w": torch.ones(2), "x": evil}, path, _use_new_zipfile_serialization=zip_format)
        with pytest.raises(UnsafePickleError, match="refusing to unpickle global"):
            load_torch_file(path)
    assert not marker.exists()


def test_other_code_paths_are_refused(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"G": collections.Counter(a=1)}))  # a class outside the list
    with pytest.raises(UnsafePickleError, match="'collections.Counter'"):
        load_network_pkl(path)
    path.write_bytes(pickle.dumps(np.array([1, "x"], dtype=object)))  # object arrays hold objects
    with pytest.raises(UnsafePickleError, match="not plain data|is not allowed"):
        load_network_pkl(path)
    # BUILD on an allowed global would tamper with later loads: refused
    for glob in (b"torch\nFloatStorage", b"torch._utils\n_rebuild_tensor_v2"):
        path.write_bytes(b"c" + glob + b"\n(}S'dtype'\nI1\nstb.")
        with pytest.raises(UnsafePickleError, match="refusing to set pickle state"):
            load_network_pkl(path)
    torch.save({"w": torch.ones(3)}, path)
    np.testing.assert_array_equal(load_torch_file(path)["w"], np.ones(3, np.float32))


def test_numpy_values_in_pickles(tmp_path):
    path = tmp_path / "np.pkl"
    arr = np.arange(12, dtype=np.float32).reshape(3, 4).T
    for protocol in (2, 4, 5):
        path.write_bytes(pickle.dumps({"a": arr, "s": np.float64(0.25), "i": np.int16(-3)}, protocol))
        out = load_network_pkl(path)
        np.testing.assert_array_equal(out["a"], arr)
        assert out["a"].dtype == np.float32 and out["s"] == 0.25 and out["i"] == -3
        assert out["G"] is None and out["training_set_kwargs"] is None


def test_corrupt_files_name_the_path(tmp_path, snapshot):
    good = io.BytesIO()
    torch.save({"w": torch.randn(64, 64)}, good, _use_new_zipfile_serialization=False)
    legacy = good.getvalue()
    good = io.BytesIO()
    torch.save({"w": torch.randn(64, 64)}, good)
    cases = {
        "garbage.pth": bytes(range(256))[::-1] * 4,  # 0xff is no pickle opcode
        "empty.pth": b"",
        "legacy_truncated.pth": legacy[: len(legacy) - 100],
        "legacy_cut_in_pickle.pth": legacy[:60],
        "zip_truncated.pth": good.getvalue()[: len(good.getvalue()) // 2],
    }
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(InvalidCheckpointError, match=re.escape(str(path))):
            load_torch_file(path)
    snap = snapshot["path"].read_bytes()
    path = tmp_path / "snapshot_truncated.pkl"
    path.write_bytes(snap[: len(snap) // 2])
    with pytest.raises(InvalidCheckpointError, match=re.escape(str(path))):
        load_network_pkl(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(InvalidCheckpointError, match=re.escape(str(path))):
        load_network_pkl(path)


@pytest.mark.filterwarnings("ignore::UserWarning")  # TypedStorage deprecation
def test_tensor_geometry_is_bounds_checked(tmp_path):
    storage = torch.arange(4, dtype=torch.float32).storage()
    rebuild = torch._utils._rebuild_tensor_v2
    path = tmp_path / "geometry.pkl"
    ok = _Reduce(rebuild, storage, 1, (2, 2), (0, 2), False, collections.OrderedDict())
    path.write_bytes(pickle.dumps({"t": ok}))
    np.testing.assert_array_equal(load_network_pkl(path)["t"], [[1, 3], [1, 3]])
    bad = {"past the end": (0, (5,), (1,)), "stride escapes": (1, (2, 2), (3, 1)),
           "negative stride": (3, (2,), (-1,)), "huge broadcast": (0, (1 << 40,), (0,))}
    for name, (offset, size, stride) in bad.items():
        evil = _Reduce(rebuild, storage, offset, size, stride, False, collections.OrderedDict())
        path.write_bytes(pickle.dumps({"t": evil}))
        with pytest.raises(InvalidCheckpointError, match=re.escape(str(path))):
            load_network_pkl(path)
