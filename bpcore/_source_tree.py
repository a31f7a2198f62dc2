"""What ``import bpcore`` does when it finds a source checkout instead of an installed build.

Python puts the current folder first on ``sys.path`` for ``python -m ...`` and ``python -c``,
so from the root of a clone ``import bpcore`` finds the ``bpcore/`` source folder, which has
no compiled modules, before the package ``pip install .`` put into site-packages. This module
lets that source folder hand the import over to the installed build (the same package, built),
and, when there is none, fail with one sentence that says what to do.

A source folder that has been built in place (``python setup.py build_ext --inplace``) is a
working package and imports as itself.
"""
import importlib.machinery
import importlib.util
import os
import sys

# one native module stands for all of them: the build compiles every one or fails
_PROBE = "_engine"


def is_built(folder):
    """True if folder holds bpcore's compiled modules."""
    return any(os.path.exists(os.path.join(folder, _PROBE + suffix))
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def installed_package(name, init_file):
    """Import and return the installed, built package ``name`` from anywhere on sys.path but
    the folder that holds the source tree whose ``__init__.py`` is init_file."""
    here = os.path.dirname(os.path.abspath(init_file))
    root = os.path.dirname(here)
    elsewhere = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    spec = importlib.machinery.PathFinder.find_spec(name, elsewhere)
    found = list(spec.submodule_search_locations or []) if spec is not None else []
    if not found or not is_built(found[0]):
        raise ImportError(
            f"bpcore: {here} is bpcore's uncompiled source tree and no built bpcore is "
            f"installed; run `pip install .` in {root} (or build in place with "
            f"`python setup.py build_ext --inplace`) and import again.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the import system hands out what sys.modules holds
    spec.loader.exec_module(module)
    return module
