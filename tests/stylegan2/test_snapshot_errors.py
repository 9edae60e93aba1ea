"""A pickle in NVIDIA's snapshot format whose networks are not StyleGAN2-ADA's (their init kwargs
lack z_dim, c_dim, ...) is refused in one line, "not a StyleGAN2-ADA snapshot", not a KeyError.
The pickle is written with the tests' stand-in for torch_utils.persistence (no torch needed)."""
import pickle
import sys

import pytest

from fake_nvidia import write_fake_packages
from jaxgen.errors import UserError
from jaxgen.runs import open_run
from jaxgen.stylegan2.nvidia import ConversionError, discriminator_kwargs, generator_kwargs
from jaxgen.stylegan2.pkl_to_orbax import convert_snapshot

OTHER_NETWORK = '''\
from torch_utils import persistence

@persistence.persistent_class
class Net:
    """A persistent network of some other project: its kwargs are not StyleGAN2-ADA's."""
    def __init__(self, **kwargs):
        pass
'''


@pytest.fixture
def foreign_snapshot(tmp_path):
    """network-snapshot.pkl: dict(G, D, G_ema) of persistent modules with foreign init kwargs."""
    pkgs = write_fake_packages(tmp_path / "pkgs")
    (pkgs / "other_net.py").write_text(OTHER_NETWORK)
    sys.path.insert(0, str(pkgs))
    try:
        import other_net
        nets = dict(G=other_net.Net(depth=3, width=64), D=other_net.Net(depth=3),
                    G_ema=other_net.Net(depth=3, width=64))
        path = tmp_path / "network-snapshot-000000.pkl"
        with open(path, "wb") as f:
            pickle.dump(dict(nets, augment_pipe=None), f)
    finally:
        sys.path.remove(str(pkgs))
        for name in ("dnnlib", "dnnlib.util", "torch_utils", "torch_utils.persistence", "other_net"):
            sys.modules.pop(name, None)
    return path


def test_a_snapshot_without_nvidias_kwargs_is_one_line_not_a_key_error(foreign_snapshot):
    with pytest.raises(ConversionError) as e:
        convert_snapshot(foreign_snapshot)
    msg = str(e.value)
    assert msg.startswith("not a StyleGAN2-ADA snapshot: the G network's init kwargs lack z_dim, c_dim, "
                          "w_dim, img_resolution, img_channels (it has: depth, width)")
    assert "\n" not in msg and not isinstance(e.value, KeyError)
    with pytest.raises(ConversionError) as e:                # what train/evaluate/evolve open it with
        open_run(foreign_snapshot)
    assert str(e.value).startswith(f"{foreign_snapshot}: not a StyleGAN2-ADA snapshot")
    assert isinstance(e.value, UserError)


def test_kwargs_of_the_wrong_type_are_refused_too():
    with pytest.raises(ConversionError, match="the D network's init kwargs lack img_resolution"):
        discriminator_kwargs(dict(c_dim=0, img_resolution="256", img_channels=3))
    with pytest.raises(ConversionError, match=r"lack z_dim, .*, img_channels \(it has: none\)"):
        generator_kwargs(None)
    ok = generator_kwargs(dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3))
    assert (ok["z_dim"], ok["img_resolution"]) == (8, 8)
