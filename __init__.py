"""Harmony for ComfyUI: synchronized audio-video generation (arXiv 2511.21579).

ComfyUI loads this folder as a package (whatever the folder is called, e.g.
``custom_nodes/ComfyUI-Harmony``) and reads the mappings below; the frontend
extension in ./js is served to the browser.

Imported as a lone module instead (``__package__`` empty), the sibling
``nodes`` package cannot be reached relatively. That happens when pytest
collects a clone whose folder name is not a Python identifier
(``ComfyUI-Harmony``): pytest imports this file as a plain ``__init__``
module with the folder itself on ``sys.path``, so ``nodes`` is imported as
the top-level package the tests use.
"""
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
