"""Tiny random checkpoint files in the layouts real weights come in (a test helper).

Every writer takes a reduced config (default ``tiny`` / ``tiny-global``) and
writes a safetensors file with the tensor names, wrapper prefix, dtypes and
metadata of the real file it stands for:

- ``write_harmony``: our own file (``harmony_config`` metadata), bf16 or scaled fp8.
- ``write_ovi``: Ovi's ``model.safetensors`` (no metadata, ``*.modulation.modulation``),
  optionally under ComfyUI's ``model.diffusion_model.`` prefix, bf16, Ovi's
  ``model_fp8_e4m3fn.safetensors`` form (block Linear weights e4m3fn, no scales)
  or ComfyUI scaled fp8 (``scaled_fp8`` + ``*.scale_weight``).
- ``write_wan22``: a bare Wan2.2-TI2V-5B DiT (the video tower alone).

``random_model(config, seed)`` is the model the files are cut from, so a test
can compare what was loaded with what was written.
"""
from __future__ import annotations

import torch

from harmony import keymap
from harmony.checkpoint import FP8_FORMATS, SCALED_FP8_KEY, quantizable_weights, quantize_fp8, save_model
from harmony.config import get_config
from harmony.model import HarmonyModel
from harmony.weightfile import save_safetensors

COMFY_PREFIX = "model.diffusion_model."


def random_model(config="tiny-global", seed: int = 0) -> HarmonyModel:
    cfg = get_config(config) if isinstance(config, str) else config
    torch.manual_seed(seed)
    return HarmonyModel(cfg).eval()


def _stored(model: HarmonyModel, layout: str, dtype, fp8: str | None) -> dict:
    """Upstream-named tensors of ``model`` in ``layout``, cast / quantised as asked."""
    quant = set(quantizable_weights(model)) if fp8 else set()
    out = {}
    for key, t in model.state_dict().items():
        name = keymap.to_upstream(key, layout)
        if name is None:
            continue
        t = t.detach().float()
        if key in quant:
            fp8_dtype, scaled = FP8_FORMATS[fp8]
            q, scale = quantize_fp8(t, fp8_dtype, scaled)
            out[name] = q
            if scale is not None:
                out[name[: -len("weight")] + "scale_weight"] = scale
        else:
            out[name] = t.to(dtype)
    if fp8 and FP8_FORMATS[fp8][1]:
        out[SCALED_FP8_KEY] = torch.empty(0, dtype=FP8_FORMATS[fp8][0])
    return out


def write_ovi(path, model=None, prefix: str = "", dtype=torch.bfloat16, fp8: str | None = None) -> str:
    """Ovi fusion file (``fp8``: None, "e4m3fn" = Ovi's fp8 file, "scaled_e4m3fn" = ComfyUI)."""
    model = model if model is not None else random_model("tiny-global")
    tensors = {prefix + k: v for k, v in _stored(model, "ovi", dtype, fp8).items()}
    if SCALED_FP8_KEY in {k[len(prefix):] for k in tensors}:
        tensors[SCALED_FP8_KEY] = tensors.pop(prefix + SCALED_FP8_KEY)
    return save_safetensors(tensors, path, {"format": "pt"})


def write_wan22(path, model=None, prefix: str = "", dtype=torch.bfloat16) -> str:
    """Wan2.2-TI2V-5B DiT alone: the video tower's tensors under Wan's names."""
    model = model if model is not None else random_model("tiny-global")
    tensors = {prefix + k: v for k, v in _stored(model, "wan2.2-ti2v-5b", dtype, None).items()}
    return save_safetensors(tensors, path, {"format": "pt"})


def write_harmony(path, model=None, dtype="bf16", fp8: str | None = None) -> str:
    """Our own file, with its ``harmony_config`` metadata."""
    model = model if model is not None else random_model("tiny")
    return save_model(model, path, dtype=dtype, fp8=fp8)


# --------------------------------------------------------------------------- Ovi's model configs

def write_ovi_configs(folder, cfg) -> None:
    """Ovi's ``video.json`` / ``audio.json`` for ``cfg`` (plus ``text_dim``, which Ovi fixes at 4096)."""
    import json
    import os

    for name, tower in (("video.json", cfg.video), ("audio.json", cfg.audio)):
        d = {"patch_size": list(tower.patch_size), "dim": tower.dim, "ffn_dim": tower.ffn_dim,
             "freq_dim": tower.freq_dim, "num_heads": tower.num_heads, "num_layers": tower.num_layers,
             "in_dim": tower.in_dim, "out_dim": tower.out_dim, "text_len": tower.text_len, "eps": tower.eps,
             "text_dim": tower.text_dim, "qk_norm": True, "cross_attn_norm": True, "window_size": [-1, -1]}
        if tower.modality == "audio":
            d["temporal_rope_scaling_factor"] = tower.audio_rope_scale
        with open(os.path.join(folder, name), "w") as f:
            json.dump(d, f)


# --------------------------------------------------------------------------- umT5

UMT5_WORDS = ["a", "red", "ball", "bounces", "hello", "there", "audio:", "<s>", "<e>", "thud", "loud", "two"]
UMT5_SIZE = dict(dim=32, heads=4, layers=2, ffn=48, buckets=8)


def write_umt5_tokenizer(folder) -> str:
    """A word-level tokenizer folder (``tokenizer.json`` + config) with umT5's special ids: pad 0, ``</s>`` 1."""
    import json
    import os

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    os.makedirs(folder, exist_ok=True)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(UMT5_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
                   "unk_token": "<unk>", "model_max_length": 512}, f)
    return os.fspath(folder)


def umt5_wan_state(seed: int = 0, dim=None) -> dict:
    """Random umT5 encoder weights under Wan's T5Encoder names (a relative bias table per block)."""
    s = dict(UMT5_SIZE, **({"dim": dim} if dim else {}))
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.2  # noqa: E731
    D, F = s["dim"], s["ffn"]
    sd = {"token_embedding.weight": r(len(UMT5_WORDS) + 3, D), "norm.weight": 1 + r(D)}
    for i in range(s["layers"]):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(D), p + "norm2.weight": 1 + r(D),
                   p + "pos_embedding.embedding.weight": r(s["buckets"], s["heads"]),
                   p + "ffn.gate.0.weight": r(F, D), p + "ffn.fc1.weight": r(F, D), p + "ffn.fc2.weight": r(D, F)})
        for n in "qkvo":
            sd[p + f"attn.{n}.weight"] = r(D, D)
    return sd


# --------------------------------------------------------------------------- the whole real-scale stack

def stack_config():
    """tiny-global with the real codecs' channels (Wan2.2 VAE 48, MMAudio 20) and umT5's text_len 512."""
    from harmony.config import TowerConfig

    base = get_config("tiny-global")
    d = UMT5_SIZE["dim"]
    video = TowerConfig(**{**base.video.to_dict(), "in_dim": 48, "out_dim": 48, "text_dim": d, "text_len": 512})
    audio = TowerConfig(**{**base.audio.to_dict(), "text_dim": d, "text_len": 512})
    return base.replace(video=video, audio=audio, meta=dict(get_config("5b-global").meta))


def write_ovi_ckpts(root) -> dict:
    """Ovi's ``ckpts`` folder as its download_weights.py lays it out, with tiny random files:
    Ovi/model.safetensors (+ video.json, audio.json), Wan2.2-TI2V-5B/{Wan2.2_VAE.pth,
    models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/}, MMAudio/ext_weights/{v1-16.pth, best_netG.pt}."""
    import os

    from harmony.codecs.bigvgan import BigVGANVocoder
    from harmony.codecs.mmaudio_vae import MMAudioVAE
    from harmony.codecs.wan_vae import WanVAE

    root = os.fspath(root)
    ovi, wan, mm = (os.path.join(root, d) for d in ("Ovi", "Wan2.2-TI2V-5B", "MMAudio/ext_weights"))
    for d in (ovi, wan, mm):
        os.makedirs(d, exist_ok=True)
    cfg = stack_config()
    paths = {"model": write_ovi(os.path.join(ovi, "model.safetensors"), random_model(cfg, seed=1))}
    write_ovi_configs(ovi, cfg)
    torch.manual_seed(2)
    paths["video_vae"] = os.path.join(wan, "Wan2.2_VAE.pth")
    torch.save(WanVAE(dim=6, dec_dim=8, z_dim=48).state_dict(), paths["video_vae"])
    paths["text_encoder"] = os.path.join(wan, "models_t5_umt5-xxl-enc-bf16.pth")
    torch.save({k: v.to(torch.bfloat16) for k, v in umt5_wan_state().items()}, paths["text_encoder"])
    paths["tokenizer"] = write_umt5_tokenizer(os.path.join(wan, "google", "umt5-xxl"))
    paths["audio_vae"] = os.path.join(mm, "v1-16.pth")
    torch.save(MMAudioVAE(hidden_dim=8).state_dict(), paths["audio_vae"])
    paths["vocoder"] = os.path.join(mm, "best_netG.pt")
    torch.save({"generator": BigVGANVocoder(upsample_initial_channel=64).state_dict()}, paths["vocoder"])
    return paths
