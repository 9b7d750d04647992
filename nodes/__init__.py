"""ComfyUI nodes of the Harmony pack (classic V1 schema: importable without ComfyUI).

A thin adapter: each node converts ComfyUI values to ``harmony`` calls and
back. Only ``nodes/host.py`` talks to ComfyUI itself.
"""
import sys
import warnings

from . import host
from .conditioning import HarmonyAudioConditioning, HarmonyTextConditioning, HarmonyVideoConditioning
from .decoder import HarmonyDecode
from .model_loader import HarmonyModelLoader
from .sample_inputs import HarmonySampleInput
from .sampler import HarmonySyncCFGSampler
from .save_av import HarmonySaveAV

NODE_CLASS_MAPPINGS = {
    "HarmonyModelLoader": HarmonyModelLoader,
    "HarmonyTextConditioning": HarmonyTextConditioning,
    "HarmonyAudioConditioning": HarmonyAudioConditioning,
    "HarmonyVideoConditioning": HarmonyVideoConditioning,
    "HarmonySyncCFGSampler": HarmonySyncCFGSampler,
    "HarmonyDecode": HarmonyDecode,
    "HarmonySaveAV": HarmonySaveAV,
    "HarmonySampleInput": HarmonySampleInput,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "HarmonyModelLoader": "Harmony Model Loader",
    "HarmonyTextConditioning": "Harmony Text Conditioning",
    "HarmonyAudioConditioning": "Harmony Audio Conditioning",
    "HarmonyVideoConditioning": "Harmony Video Conditioning",
    "HarmonySyncCFGSampler": "Harmony SyncCFG Sampler",
    "HarmonyDecode": "Harmony Decode",
    "HarmonySaveAV": "Harmony Save AV (mp4)",
    "HarmonySampleInput": "Harmony Sample Input",
}

host.register_model_folder()

if sys.argv[:1] == ["-m"]:  # `python -m nodes.core_inputs ...`: the module is already imported above (by
    # the node modules), so runpy would warn about it on stderr before the converter's own output
    warnings.filterwarnings("ignore", message=r"'[\w.]*core_inputs' found in sys\.modules", category=RuntimeWarning)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
