"""Conditioner: strings (and a reference voice) -> :class:`~harmony.model.Conditioning`.

The tiny model's stand-ins for the paper's encoders, trained with the model:

* prompt -> text encoder -> ``video_context`` (the video tower's umT5 role);
* audio caption -> the same text encoder, transcript -> transcript encoder
  (the F5-TTS-style speech encoder role); the two are concatenated into
  ``audio_context``;
* reference voice: a clean audio latent, prepended to the audio tokens by the
  model. When there is none, a zero latent of the default length stands in
  (the model is trained with such "no reference" rows).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from .model import Conditioning
from .text import TextEncoder, TranscriptEncoder, prompt_tokenizer, transcript_tokenizer

PROMPT_LEN = 64
CAPTION_LEN = 24
TRANSCRIPT_LEN = 16
REF_LATENTS = 47  # 1.5 s of audio at 31.25 latents/s


class Conditioner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.video.text_dim != cfg.audio.text_dim:
            raise ValueError("the tiny conditioner needs equal text_dim in both towers")
        if cfg.video.text_len < PROMPT_LEN or cfg.audio.text_len < CAPTION_LEN + TRANSCRIPT_LEN:
            raise ValueError(f"text_len must be >= {PROMPT_LEN} (video) and "
                             f">= {CAPTION_LEN + TRANSCRIPT_LEN} (audio) for this conditioner")
        dim = cfg.video.text_dim
        self.ref_channels = cfg.audio.in_dim
        self.prompt_tokens = prompt_tokenizer(PROMPT_LEN)
        self.caption_tokens = prompt_tokenizer(CAPTION_LEN)
        self.transcript_tokens = transcript_tokenizer(TRANSCRIPT_LEN)
        self.text_encoder = TextEncoder(self.prompt_tokens.vocab_size, dim=dim, max_len=PROMPT_LEN)
        self.transcript_encoder = TranscriptEncoder(self.transcript_tokens.vocab_size, dim=dim,
                                                    max_len=TRANSCRIPT_LEN)

    def forward(self, prompts, captions, transcripts, refs: Sequence[Optional[torch.Tensor]],
                device=None) -> Conditioning:
        device = device or next(self.parameters()).device
        video_context = self.text_encoder(self.prompt_tokens.encode_batch(list(prompts)).to(device))
        caption = self.text_encoder(self.caption_tokens.encode_batch(list(captions)).to(device))
        transcript = self.transcript_encoder(
            self.transcript_tokens.encode_batch(list(transcripts)).to(device))
        audio_context = torch.cat([caption, transcript], dim=1)
        ref = [r if r is not None else torch.zeros(REF_LATENTS, self.ref_channels) for r in refs]
        n = min(r.shape[0] for r in ref)
        ref_audio = torch.stack([r[:n] for r in ref]).to(device, video_context.dtype)
        return Conditioning(video_context, audio_context, ref_audio)

    @classmethod
    def from_file(cls, path: str, cfg) -> "Conditioner":
        from .weightfile import read_safetensors

        tensors, _ = read_safetensors(path, "text-encoder file")
        cond = cls(cfg)
        missing, unexpected = cond.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ValueError(f"text-encoder file {path!r} does not match this model: missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]}")
        return cond.eval()
