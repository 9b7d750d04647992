"""Harmony: synchronized audio-video generation (arXiv 2511.21579), pure torch.

A dual-tower (video + audio) Wan-style diffusion transformer with
Global-Local Decoupled Interaction, Cross-Task Synergy training and SyncCFG
sampling. Importing this package imports nothing from ComfyUI.

Entry points: :class:`harmony.pipeline.HarmonyPipeline` (generation),
:class:`harmony.model.HarmonyModel` (the network), ``python -m harmony``.
"""
__version__ = "0.1.0"
