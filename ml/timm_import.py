"""``import timm`` without torchvision.

timm (1.0.x) imports torchvision at module level: ``timm.layers`` takes torchvision's
FrozenBatchNorm2d and ``timm.data`` (imported by every model file for the ImageNet
mean/std constants) takes torchvision's transforms and datasets. PyPI's torchvision does
not import beside this project's torch 2.13 CPU build, and building a model needs none of
it. So when torchvision is absent, ``load_timm`` imports timm while a placeholder package
answers ``torchvision.*`` imports, then removes the placeholder again: later
``import torchvision`` anywhere still fails honestly, and any timm feature that really
needs torchvision (data pipelines, ``features_only`` FX extraction) raises ImportError
with a message saying so when it is used. Model construction, ``load_state_dict`` and
forward passes never touch it (tested for convnext, efficientnet and resnet in
tests/embeddings/test_encoders_timm.py).

When a working torchvision is installed, timm is imported normally.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

_lock = threading.Lock()
_MESSAGE = ("torchvision is not installed (it does not import beside this project's torch build); "
            "Latent Sky uses timm only to build and run models, and {name} needs torchvision")


class _MissingMeta(type):
    """Class-level attribute access on a placeholder (``InterpolationMode.BILINEAR``) gives
    another placeholder, so module-level tables in timm.data build without torchvision."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}")


_placeholders: dict[str, type] = {}


def _placeholder(qualname: str) -> type:
    """A class standing in for ``torchvision.<qualname>``: importable, subclassable, hashable;
    instantiating or calling it raises ImportError naming what was needed."""
    if qualname not in _placeholders:
        def __init__(self, *args, **kwargs):
            raise ImportError(_MESSAGE.format(name=f"torchvision.{qualname}"))
        _placeholders[qualname] = _MissingMeta(qualname.rsplit(".", 1)[-1], (),
                                               {"__init__": __init__, "__qualname__": qualname})
    return _placeholders[qualname]


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{self.__name__.partition('.')[2] or 'torchvision'}.{name}".lstrip("."))


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []  # a package, so submodules import
        return module

    def exec_module(self, module):
        return None


def torchvision_available() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # installed but broken (the PyPI build beside torch 2.13 CPU)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def load_timm():
    """The timm module, imported without torchvision when torchvision is absent or broken."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    with _lock:
        if "timm" in sys.modules:
            return sys.modules["timm"]
        if torchvision_available():
            import timm
            return timm
        finder = _StubFinder()
        sys.meta_path.insert(0, finder)
        try:
            import timm
        except ImportError as exc:
            for name in [m for m in sys.modules if m == "timm" or m.startswith("timm.")]:
                del sys.modules[name]
            raise ImportError(f"timm could not be imported ({exc}); install it as requirements-nodeps.txt "
                              "says (pip install --no-deps)") from None
        finally:
            sys.meta_path.remove(finder)
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
        return timm
