"""Harmony for ComfyUI: synchronized audio-video generation (arXiv 2511.21579).

ComfyUI loads this folder as a package and reads the mappings below; the
frontend extension in ./js is served to the browser.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
