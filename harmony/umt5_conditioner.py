"""The pipeline's text conditioner for umT5-conditioned models (Ovi, Harmony 5b).

Both towers get the umT5 embedding of one string built as Ovi does (:func:`harmony.umt5.ovi_prompt`):
the scene, the transcript in ``<S>…<E>``, the audio caption as ``Audio: …`` (``caption_tags="audcap"``
for Ovi's 720x720_5s checkpoint, trained with ``<AUDCAP>…<ENDAUDCAP>``).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable

import torch

from .components import ComponentError, peek_tensors, usual
from .model import Conditioning


class UMT5Conditioner:
    """The pipeline's conditioner for umT5 models: Ovi's one prompt, the same embedding for both towers.

    The encoder (umT5-XXL: 5.7B parameters, about 11 GB in bf16) is not kept: for a prompt not
    encoded before it is read from its file onto the pipeline's device, encodes, and is freed
    right after (``model`` is None between encodings). The embeddings are kept instead (the last
    ``KEEP`` prompts, and the empty prompt, encoded with every load, so that the unconditional side
    of CFG / text CFG never reads the encoder again). The file and tokenizer are checked when this
    is built (the file's header; the tokenizer is small and kept)."""

    KEEP = 8

    def __init__(self, path, tokenizer, dtype=torch.float32, text_len: int = 512, caption_tags: str = "audio",
                 log: Callable[[str], None] = print):
        from .umt5 import UMT5Error, config_from_state, load_tokenizer, to_hf_state

        self.path, self.tokenizer_path = os.fspath(path), os.fspath(tokenizer)
        self.dtype, self.text_len, self.caption_tags, self.log = dtype, int(text_len), caption_tags, log
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
        self._kept: OrderedDict = OrderedDict()  # text -> embedding [text_len, dim] float32, on the CPU

    @property
    def dim(self) -> int:
        return int(self.config.d_model)

    def to(self, *args, **kw):
        return self

    def _say_cut(self, texts):
        from .umt5 import clean_text

        for text in texts:
            ids = self.tokenizer(clean_text(text), truncation=True, max_length=self.text_len,
                                 add_special_tokens=True)["input_ids"]
            if len(ids) >= self.text_len:
                self.log(f"the prompt is cut at {self.text_len} tokens (umT5's limit)")

    def _encode(self, texts, device: torch.device):
        import gc

        from .umt5 import load_umt5

        self.log(f"reading the text encoder ({os.path.basename(self.path)}); freed after encoding")
        enc = load_umt5(self.path, self.tokenizer_path, dtype=self.dtype, device=device, text_len=self.text_len)
        self.model = enc.model
        try:
            for text in texts:
                emb, _ = enc.encode([text])
                self._kept[text] = emb[0].cpu()
        finally:
            enc.release()
            self.model = enc = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def __call__(self, prompts, captions, transcripts, refs, device=None) -> Conditioning:
        from .umt5 import ovi_prompt

        texts = [ovi_prompt(p, t, c, self.caption_tags) for p, c, t in zip(prompts, captions, transcripts)]
        run_on = torch.device(device) if device is not None else torch.device("cpu")
        self._say_cut(texts)
        todo = [t for t in dict.fromkeys(texts + [""]) if t not in self._kept]
        if todo:
            self._encode(todo, run_on)
        for t in texts:
            self._kept.move_to_end(t)
        emb = torch.stack([self._kept[t] for t in texts]).to(run_on)
        for t in list(self._kept)[: max(0, len(self._kept) - self.KEEP - 1)]:
            if t and t not in texts:
                del self._kept[t]
        return Conditioning(emb, emb.clone(), None)
