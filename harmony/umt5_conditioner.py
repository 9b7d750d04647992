"""The pipeline's text conditioner for umT5-conditioned models (Ovi, Harmony 5b): the one umT5 text side,
whatever runs the encoder (:class:`UMT5File`: the CLI's file, read per prompt and freed; the ComfyUI nodes:
the core CLIP wired to them, ``nodes/core_inputs.CoreClipEncoder``).

Both towers get the umT5 embedding of one string built as Ovi does (:func:`harmony.umt5.ovi_prompt`):
the scene, the transcript in ``<S>…<E>``, the audio caption as ``Audio: …`` (``caption_tags="audcap"``
for Ovi's 720x720_5s checkpoint, trained with ``<AUDCAP>…<ENDAUDCAP>``).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable, Optional, Sequence

import torch

from .components import ComponentError, usual
from .weightfile import peek as peek_tensors
from .model import Conditioning
from .umt5 import TEXT_LEN


def fit_text(emb: torch.Tensor, text_len: int, log: Callable[[str], None] = print) -> torch.Tensor:
    """One text's embedding ``[L, D]`` (or ``[1, L, D]``) -> ``[text_len, D]``: cut, or zero-padded as
    Wan / Ovi pad; a cut that drops non-zero rows is logged."""
    if emb.dim() == 3 and emb.shape[0] == 1:
        emb = emb[0]
    if emb.dim() != 2:
        raise ValueError(f"text embeddings: expected [tokens, width], got shape {tuple(emb.shape)}")
    n = emb.shape[0]
    if n > text_len:
        if emb[text_len:].abs().amax() > 0:
            log(f"the prompt is cut at {text_len} tokens (umT5's limit)")
        return emb[:text_len]
    return torch.nn.functional.pad(emb, (0, 0, 0, text_len - n))


class UMT5File:
    """umT5-XXL from its weight file and tokenizer folder, as an encoder for :class:`UMT5Conditioner`.

    The encoder (umT5-XXL: 5.7B parameters, about 11 GB in bf16) is not kept: each :meth:`encode` reads
    it from its file onto the device, encodes, and frees it right after (``model`` is None between
    encodings). The file and tokenizer are checked when this is built (the file's header; the
    tokenizer is small and kept)."""

    def __init__(self, path, tokenizer, dtype=torch.float32, log: Callable[[str], None] = print):
        from .umt5 import UMT5Error, config_from_state, load_tokenizer, to_hf_state

        self.path, self.tokenizer_path = os.fspath(path), os.fspath(tokenizer)
        self.dtype, self.log = dtype, log
        try:
            self.config = config_from_state(to_hf_state(peek_tensors(self.path, "--text-encoder"), self.path, dtype))
        except (UMT5Error, KeyError, IndexError) as e:
            raise ComponentError(f"--text-encoder {self.path}: {e} (expected {usual('text_encoder')})") from None
        try:
            self.tokenizer = load_tokenizer(self.tokenizer_path)
        except (UMT5Error, OSError, ValueError) as e:
            raise ComponentError(f"--tokenizer {self.tokenizer_path}: {e}") from None
        if len(self.tokenizer) > self.config.vocab_size:
            raise ComponentError(f"--tokenizer {self.tokenizer_path} has {len(self.tokenizer)} tokens but the "
                                 f"--text-encoder {self.path} only {self.config.vocab_size}: they are not a pair")
        self.model = None  # the encoder's weights, only while encoding

    @property
    def dim(self) -> int:
        return int(self.config.d_model)

    def _say_cut(self, texts, text_len: int):
        from .umt5 import clean_text

        for text in texts:
            ids = self.tokenizer(clean_text(text), truncation=True, max_length=text_len,
                                 add_special_tokens=True)["input_ids"]
            if len(ids) >= text_len:
                self.log(f"the prompt is cut at {text_len} tokens (umT5's limit)")

    def encode(self, texts: Sequence[str], device, text_len: int) -> list:
        """Each text -> its embedding ``[text_len, dim]`` float32 on the CPU (one read of the file)."""
        import gc

        from .umt5 import load_umt5

        device = torch.device(device)
        self._say_cut(texts, text_len)
        self.log(f"reading the text encoder ({os.path.basename(self.path)}); freed after encoding")
        enc = load_umt5(self.path, self.tokenizer_path, dtype=self.dtype, device=device, text_len=text_len)
        self.model = enc.model
        try:
            return [enc.encode([text])[0][0].cpu() for text in texts]
        finally:
            enc.release()
            self.model = enc = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()


class UMT5Conditioner:
    """The pipeline's conditioner for umT5 models: Ovi's one prompt, the same embedding for both towers.

    ``encoder``: ``encode(texts, device, text_len) -> [embedding [L, D]]`` and ``dim`` (the width, or
    None when not known): :class:`UMT5File`, or a ComfyUI core CLIP (``nodes/core_inputs``). Each
    embedding is fitted to ``text_len`` rows (:func:`fit_text`). The embeddings are kept (the last
    ``KEEP`` prompts, and the texts of :meth:`keep`: the empty prompt and the negative prompts, encoded
    with every read of the encoder, so that the unconditional side of CFG / text CFG never reads it
    again)."""

    KEEP = 8

    def __init__(self, encoder, text_len: int = TEXT_LEN, caption_tags: str = "audio",
                 log: Callable[[str], None] = print):
        self.encoder, self.text_len, self.caption_tags, self.log = encoder, int(text_len), caption_tags, log
        self._always: dict = {"": None}  # texts encoded with every read (an ordered set)
        self._kept: OrderedDict = OrderedDict()  # text -> embedding [text_len, dim] float32, on the CPU

    @property
    def dim(self) -> Optional[int]:
        return getattr(self.encoder, "dim", None)

    @property
    def model(self):
        """The encoder's weights while it encodes (:class:`UMT5File`), else None."""
        return getattr(self.encoder, "model", None)

    def to(self, *args, **kw):
        return self

    def keep(self, texts) -> None:
        """Encode ``texts`` (e.g. the negative prompts) with every read of the encoder, and keep them."""
        self._always.update(dict.fromkeys(t for t in texts))

    def _embed(self, texts: list, device) -> torch.Tensor:
        run_on = torch.device(device) if device is not None else torch.device("cpu")
        todo = [t for t in dict.fromkeys(texts + list(self._always)) if t not in self._kept]
        if todo:
            for t, emb in zip(todo, self.encoder.encode(todo, run_on, self.text_len)):
                self._kept[t] = fit_text(emb.float().cpu(), self.text_len, self.log)
        for t in texts:
            self._kept.move_to_end(t)
        emb = torch.stack([self._kept[t] for t in texts]).to(run_on)
        extra = [t for t in self._kept if t not in self._always]
        for t in extra[: max(0, len(extra) - self.KEEP)]:
            if t not in texts:
                del self._kept[t]
        return emb

    def __call__(self, prompts, captions, transcripts, refs, device=None) -> Conditioning:
        from .umt5 import ovi_prompt

        texts = [ovi_prompt(p, t, c, self.caption_tags) for p, c, t in zip(prompts, captions, transcripts)]
        emb = self._embed(texts, device)
        return Conditioning(emb, emb.clone(), None)

    def negative(self, video_text: str, audio_text: str, device=None) -> Conditioning:
        """The unconditional side of text CFG as Ovi's inference builds it: the video tower reads the
        embedding of ``video_text``, the audio tower that of ``audio_text`` (the texts as given)."""
        emb = self._embed([video_text, audio_text], device)
        return Conditioning(emb[:1], emb[1:], None)
