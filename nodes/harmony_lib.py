"""The ``harmony`` modules the nodes use, imported the way the pack itself was imported: the one
place that knows the pack's two import modes. Node modules import from here by name
(``from .harmony_lib import pipeline, media``), so tools and readers see what the adapter uses.

* Inside ComfyUI the pack is a package (``custom_nodes/ComfyUI-Harmony`` imported as, e.g.,
  ``ComfyUI-Harmony``), so this module is ``<pack>.nodes.harmony_lib`` and ``harmony`` is its
  sibling subpackage ``<pack>.harmony``, reached relatively: the repository root is not on
  ``sys.path`` there, and a top-level ``harmony`` (another pack's, or none) must never be used.
* Tests and scripts put the repository root on ``sys.path`` and import ``nodes`` and ``harmony``
  as top-level packages (so does pytest when it imports the root ``__init__.py`` as a lone
  module); then there is no parent package and ``harmony`` is imported absolutely.

The choice is made from ``__package__``, not by catching ImportError, so that an error inside
``harmony`` is shown as itself and never hidden behind a second, misleading import.
"""
# ruff: noqa: F401 (re-exported for the node modules)
if __package__ and "." in __package__:  # inside ComfyUI: <pack>.nodes -> <pack>.harmony
    from .. import harmony
    from ..harmony import (assemble, attention, checkpoint, families, guidance, jobs, media, metrics, model,
                           offload, pipeline, sampling, umt5_conditioner, validate, weightfile)
    from ..harmony.codecs import bigvgan, contract, mmaudio, mmaudio_vae, wan_vae
else:  # tests / scripts: the repository root is on sys.path
    import harmony
    from harmony import (assemble, attention, checkpoint, families, guidance, jobs, media, metrics, model,
                         offload, pipeline, sampling, umt5_conditioner, validate, weightfile)
    from harmony.codecs import bigvgan, contract, mmaudio, mmaudio_vae, wan_vae
