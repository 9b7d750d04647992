"""The ``harmony`` package, imported the way the pack is loaded.

ComfyUI imports this pack as a package, so ``harmony`` is its sibling
subpackage (``<pack>.harmony``); tests put the repository root on
``sys.path`` and import ``nodes`` and ``harmony`` as top-level packages.
Node modules reach harmony's submodules through :func:`harmony_module`, at
call time, so a problem inside the model package surfaces as an error on the
node that needs it rather than as an "IMPORT FAILED" of the whole pack.
"""
import importlib

try:
    from .. import harmony  # inside ComfyUI: <pack>.harmony
except ImportError:  # tests / scripts: the repository root is on sys.path
    import harmony


def harmony_module(name: str):
    """``harmony.<name>`` (e.g. "pipeline", "media", "metrics")."""
    return importlib.import_module(f"{harmony.__name__}.{name}")
