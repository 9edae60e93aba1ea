"""Stand-ins for NVIDIA's `torch_utils.persistence` and `dnnlib` that pickle like the real ones.

Tests write these into a temporary directory to build snapshot `.pkl` files
whose embedded module source would run under a plain `pickle.load`, exactly as
official StyleGAN2-ADA snapshots do. The code here is the tests' own.
"""
import pathlib

_PERSISTENCE = '''\
"""Minimal stand-in for NVIDIA's torch_utils.persistence (same pickle format)."""
import copy, inspect, sys, types, uuid

_sources = {}  # module name -> source, for modules created from embedded source

def persistent_class(orig_class):
    name = orig_class.__module__
    src = _sources.get(name) or inspect.getsource(sys.modules[name])
    class Wrapped(orig_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args, self._init_kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
        @property
        def init_kwargs(self):
            return copy.deepcopy(self._init_kwargs)
        def __reduce__(self):
            state = super().__reduce__()[2]
            meta = dict(type="class", version=6, module_src=src,
                        class_name=orig_class.__name__, state=state)
            return _reconstruct_persistent_obj, (meta,)
    Wrapped.__name__ = orig_class.__name__
    return Wrapped

def _reconstruct_persistent_obj(meta):
    module = types.ModuleType("_imported_module_" + uuid.uuid4().hex)
    sys.modules[module.__name__] = module
    _sources[module.__name__] = meta["module_src"]
    exec(meta["module_src"], module.__dict__)  # what makes real snapshots unsafe
    cls = persistent_class(module.__dict__[meta["class_name"]])
    obj = cls.__new__(cls)
    obj.__setstate__(meta["state"])
    return obj
'''

_EASYDICT = '''\
class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)
    def __setattr__(self, name, value):
        self[name] = value
'''



def write_fake_packages(root) -> pathlib.Path:
    """Write torch_utils/persistence.py and dnnlib/ under `root` (put `root` on sys.path)."""
    root = pathlib.Path(root)
    (root / "torch_utils").mkdir(parents=True, exist_ok=True)
    (root / "dnnlib").mkdir(exist_ok=True)
    (root / "torch_utils" / "__init__.py").write_text("")
    (root / "torch_utils" / "persistence.py").write_text(_PERSISTENCE)
    (root / "dnnlib" / "__init__.py").write_text("from .util import EasyDict\n")
    (root / "dnnlib" / "util.py").write_text(_EASYDICT)
    return root
