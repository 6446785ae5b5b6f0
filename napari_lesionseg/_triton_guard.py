"""Keep triton out of a napari process whose OpenGL is already running.

Measured here: once napari has opened a viewer on Mesa's software OpenGL (llvmpipe: Xvfb, VMs, remote desktops),
importing triton — which torchvision pulls in through torch._dynamo — segfaults, because triton's bundled LLVM
clashes with the LLVM Mesa has loaded. This plugin never needs triton (no torch.compile), so inside napari, when
triton is not loaded yet, imports of it fail cleanly with ImportError, which torch handles (it then reports
"no triton"). Importing torch before the viewer opens (as `make run` and the tests do) avoids the clash too.
Set LESIONSEG_ALLOW_TRITON=1 to switch this off.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys


class _TritonBlocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError("triton is not loaded inside napari by napari-lesionseg (LLVM clash with Mesa OpenGL)")


def install() -> None:
    if os.environ.get("LESIONSEG_ALLOW_TRITON") == "1" or "triton" in sys.modules:
        return
    if not any(isinstance(f, _TritonBlocker) for f in sys.meta_path):
        sys.meta_path.insert(0, _TritonBlocker())
