"""umT5-XXL text encoder (Wan2.2 / Ovi) through ``transformers``' ``UMT5EncoderModel``.

Optional: needs ``pip install transformers sentencepiece`` (the package imports
without them; :func:`load_umt5` says what to install when it is called).

Weights, any of the single files people have (the config is read off the
tensor shapes, so reduced sizes load too):

- ``umt5_xxl_fp16.safetensors`` / ``umt5_xxl_bf16.safetensors`` (ComfyUI's
  ``text_encoders`` folder; encoder-only, ``transformers`` names:
  ``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q.weight``, ...);
- ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` (ComfyUI scaled fp8:
  ``scaled_fp8`` + ``*.scale_weight``; dequantised to ``dtype`` on load);
- ``models_t5_umt5-xxl-enc-bf16.pth`` (Wan2.2-TI2V-5B's folder; Wan's names
  ``token_embedding``, ``blocks.N.attn.q``, ``blocks.N.ffn.gate.0`` ...), read
  with ``torch.load(weights_only=True)`` only.

Tokenizer: a local folder ``transformers`` can read (Wan's ``google/umt5-xxl``
folder: ``tokenizer.json`` and/or ``spiece.model``). Nothing is downloaded.

Encoding follows Wan's ``T5EncoderModel``: text cleaned (HTML unescaped,
whitespace collapsed), tokenised with ``</s>`` appended and truncated to
``text_len`` = 512 tokens, encoded with the padding masked, then each row is cut
to its token count and zero-padded back to ``text_len`` (the DiT attends to
those zero rows, as Wan's does).

The audio tower's prompt is built as Ovi's inference does (:func:`ovi_prompt`):
one string, the scene, the speech wrapped in ``<S>...<E>``, the audio caption
at the end as ``Audio: ...`` (``<AUDCAP>...<ENDAUDCAP>`` for Ovi's 720x720_5s
checkpoint); both towers get the embedding of that same string.
"""
from __future__ import annotations

import html
import os
import re
from typing import Optional, Sequence

import torch

from .weightfile import read_state_dict

TEXT_LEN = 512
"""Wan's / Ovi's ``text_len``."""
OVI_VIDEO_NEGATIVE = "jitter, bad hands, blur, distortion"
OVI_AUDIO_NEGATIVE = "robotic, muffled, echo, distorted"
"""Ovi's default negative prompts (inference_fusion.yaml)."""
CAPTION_TAGS = ("audio", "audcap")
INSTALL = "pip install transformers sentencepiece"
USUAL_FILES = ("umt5_xxl_bf16.safetensors / umt5_xxl_fp16.safetensors / umt5_xxl_fp8_e4m3fn_scaled.safetensors "
               "(ComfyUI models/text_encoders) or models_t5_umt5-xxl-enc-bf16.pth (Wan2.2-TI2V-5B)")
_PREFIXES = ("text_encoders.umt5xxl.transformer.", "umt5xxl.transformer.", "transformer.", "model.")


class UMT5Error(ValueError):
    """A umT5 weight file or tokenizer folder that cannot be used, with the reason."""


def require_transformers():
    """``transformers`` or an ImportError saying what to install."""
    try:
        import transformers
    except ImportError:
        raise ImportError("the umT5-XXL text encoder needs the optional packages transformers and sentencepiece, "
                          f"which are not installed: {INSTALL}") from None
    return transformers


# --------------------------------------------------------------------------- prompt


def ovi_prompt(scene: str = "", transcript=None, caption: Optional[str] = None, caption_tags: str = "audio") -> str:
    """Ovi's one-string prompt from separate inputs.

    scene: what is seen; transcript: words spoken (a string, or a list of
    utterances, each wrapped in ``<S>...<E>``; text already holding ``<S>`` is
    kept); caption: what is heard, appended last as ``Audio: ...``
    (``caption_tags="audcap"``: ``<AUDCAP>...<ENDAUDCAP>``, what Ovi's
    720x720_5s checkpoint was trained with).
    """
    if caption_tags not in CAPTION_TAGS:
        raise ValueError(f"caption_tags must be one of {CAPTION_TAGS}, got {caption_tags!r}")
    parts = [scene.strip()] if scene and scene.strip() else []
    if isinstance(transcript, str):
        transcript = [transcript]
    for t in transcript or []:
        t = t.strip()
        if t:
            parts.append(t if "<S>" in t else f"<S>{t}<E>")
    if caption and caption.strip():
        c = caption.strip()
        parts.append(f"Audio: {c}" if caption_tags == "audio" else f"<AUDCAP>{c}<ENDAUDCAP>")
    return " ".join(parts)


def clean_text(text: str) -> str:
    """Wan's 'whitespace' cleaning: HTML entities unescaped (twice), whitespace runs to one space,
    ends stripped (and ftfy's fixes when ftfy is installed)."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- weights


def _wan_to_hf(name: str) -> Optional[str]:
    """A Wan T5Encoder name -> its ``UMT5EncoderModel`` name (None: not an encoder weight)."""
    if name == "token_embedding.weight":
        return "shared.weight"
    if name == "norm.weight":
        return "encoder.final_layer_norm.weight"
    m = re.match(r"^blocks\.(\d+)\.(.+)$", name)
    if not m:
        return None
    i, rest = m.groups()
    table = {"norm1.weight": "layer.0.layer_norm.weight", "norm2.weight": "layer.1.layer_norm.weight",
             "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
             "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
             "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
             "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}
    for p in "qkvo":
        table[f"attn.{p}.weight"] = f"layer.0.SelfAttention.{p}.weight"
    return f"encoder.block.{i}.{table[rest]}" if rest in table else None


def to_hf_state(sd: dict, path: str = "umT5 file", dtype=torch.bfloat16) -> dict:
    """Any supported layout -> ``UMT5EncoderModel`` names, scaled fp8 dequantised to ``dtype``."""
    sd = dict(sd)
    sd.pop("scaled_fp8", None)
    sd.pop("spiece_model", None)  # a tokenizer some ComfyUI files carry; the folder is used instead
    out = {}
    wan = "token_embedding.weight" in sd or any(k.startswith("blocks.") for k in sd)
    for k, t in sd.items():
        if k.endswith((".scale_weight", ".scale_input")):
            continue
        name = k
        for p in _PREFIXES:
            if name.startswith(p):
                name = name[len(p):]
                break
        if wan:
            name = _wan_to_hf(name)
            if name is None:
                continue
        elif not (name.startswith("encoder.") or name == "shared.weight"):
            continue  # decoder / lm_head of a full T5 file: not used
        scale = sd.get(k[: -len("weight")] + "scale_weight") if k.endswith(".weight") else None
        w = t.float() * scale.float() if scale is not None else t
        out[name] = w.to(dtype) if w.is_floating_point() else w
    if "shared.weight" not in out and "encoder.embed_tokens.weight" in out:
        out["shared.weight"] = out["encoder.embed_tokens.weight"]
    if "shared.weight" not in out or not any(k.startswith("encoder.block.") for k in out):
        some = ", ".join(list(sd)[:5])
        raise UMT5Error(f"{path} is not a umT5 encoder (no token embedding / encoder blocks; it holds {some}, ...); "
                        f"people usually have {USUAL_FILES}")
    out["encoder.embed_tokens.weight"] = out["shared.weight"]
    return out


def config_from_state(state: dict):
    """A ``UMT5Config`` read off the tensor shapes (vocab, width, heads, layers, ffn, buckets)."""
    transformers = require_transformers()
    vocab, d_model = state["shared.weight"].shape
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.block.")}
    rel = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    heads = rel[1]
    inner = state["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]
    d_ff = state["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]
    return transformers.UMT5Config(vocab_size=vocab, d_model=d_model, d_kv=inner // heads, d_ff=d_ff,
                                   num_layers=len(layers), num_decoder_layers=0, num_heads=heads,
                                   relative_attention_num_buckets=rel[0], relative_attention_max_distance=128,
                                   feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6,
                                   tie_word_embeddings=False, pad_token_id=0, eos_token_id=1)


def load_tokenizer(folder):
    """A ``transformers`` tokenizer from a local folder (never downloads)."""
    transformers = require_transformers()
    folder = os.fspath(folder) if folder is not None else None
    if folder is None or not os.path.isdir(folder):
        raise FileNotFoundError(f"umT5 tokenizer folder not found: {folder}; use the google/umt5-xxl folder of "
                                "Wan2.2-TI2V-5B (it holds tokenizer.json / spiece.model)")
    if not any(os.path.isfile(os.path.join(folder, n)) for n in ("tokenizer.json", "spiece.model")):
        raise UMT5Error(f"{folder} holds neither tokenizer.json nor spiece.model; point it at Wan2.2-TI2V-5B's "
                        "google/umt5-xxl folder")
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


class UMT5TextEncoder:
    """Tokenizer + ``UMT5EncoderModel``; ``encode(texts)`` -> ``[B, text_len, d_model]`` (padded rows zero)."""

    def __init__(self, model, tokenizer, text_len: int = TEXT_LEN):
        self.model, self.tokenizer, self.text_len = model.eval(), tokenizer, int(text_len)

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    @property
    def device(self):
        return self.model.shared.weight.device

    def tokens(self, texts: Sequence[str]):
        """``(ids, mask)`` [B, L] with L the longest row (at most text_len), ``</s>`` appended."""
        if isinstance(texts, str):
            texts = [texts]
        batch = self.tokenizer([clean_text(t) for t in texts], padding="longest", truncation=True,
                               max_length=self.text_len, add_special_tokens=True, return_tensors="pt")
        return batch["input_ids"], batch["attention_mask"]

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeddings [B, text_len, dim] float32, lengths [B])``; rows past each length are zero."""
        ids, mask = self.tokens(texts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        lengths = mask.sum(dim=1)
        emb = out.new_zeros(out.shape[0], self.text_len, out.shape[2])
        for i, n in enumerate(lengths.tolist()):
            emb[i, :n] = out[i, :n]
        return emb, lengths.cpu()

    def release(self):
        """Drop the weights (the encoder is not needed after encoding)."""
        self.model = None


def load_umt5(path, tokenizer, dtype=torch.bfloat16, device="cpu", text_len: int = TEXT_LEN) -> UMT5TextEncoder:
    """A :class:`UMT5TextEncoder` from a weight file (see the module docstring) and a tokenizer folder."""
    transformers = require_transformers()
    tok = load_tokenizer(tokenizer)
    state = to_hf_state(read_state_dict(path, "umT5 text encoder", hint=f"people usually have {USUAL_FILES}"),
                        os.fspath(path), dtype=dtype)
    cfg = config_from_state(state)
    with torch.device("meta"):
        model = transformers.UMT5EncoderModel(cfg)
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    bad = [f"{k}: file {list(state[k].shape)} vs model {list(want[k].shape)}" for k in want
           if k in state and state[k].shape != want[k].shape]
    if missing or unexpected or bad:
        raise UMT5Error(f"{path}: tensors do not form a umT5 encoder: missing {missing[:5]}, unexpected "
                        f"{unexpected[:5]}, wrong shapes {bad[:3]}")
    model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True, assign=True)
    model.encoder.embed_tokens = model.shared
    if len(tok) > cfg.vocab_size:
        raise UMT5Error(f"tokenizer {tokenizer} has {len(tok)} tokens but the encoder {path} only "
                        f"{cfg.vocab_size}: they are not a pair")
    return UMT5TextEncoder(model, tok, text_len)
