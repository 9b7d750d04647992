"""Tiny prompt / transcript tokenisers and encoders (stand-ins for umT5 and the
F5-TTS-style speech encoder of the real model).

- ``Tokenizer``: deterministic word-level vocabulary (the world's words) with a
  character fallback for unknown words; ``encode(text) -> LongTensor [max_len]``
  zero-padded (id 0 = ``<pad>``).
- ``TextEncoder``: token + learned position embeddings, a small pre-norm
  transformer; ``[B, L]`` ids -> ``[B, L, dim]`` with padded rows set to zero
  (like Wan's umT5 context: real rows, then zero padding).
- ``TranscriptEncoder``: syllable transcripts (F5-TTS style): syllable/character
  embedding, learned positions, ConvNeXt-V2 blocks -> ``[B, L, dim]``.

Both encoders are trained jointly with the diffusion model; here they are
built, saved and loaded (``save_encoder`` / ``load_encoder``: safetensors
state dict, constructor config and tokenizer vocabulary in the metadata).
"""
from __future__ import annotations

import json
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, UNK, WORD_END = "<pad>", "<unk>", "<w>"
SPECIALS = (PAD, UNK, WORD_END)
CHARS = tuple("abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'-")
_TOKEN_RE = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


def world_words() -> list[str]:
    """The world's sorted vocabulary (``harmony.world.vocab.vocabulary()``)."""
    from .world.vocab import vocabulary

    return list(vocabulary())


def world_syllables() -> list[str]:
    """The world's syllables (the units of a transcript)."""
    from .world.vocab import SYLLABLES

    return list(SYLLABLES)


class Tokenizer:
    """Word-level tokenizer with character fallback.

    Ids: ``0 <pad>``, ``1 <unk>``, ``2 <w>`` (ends a spelled-out word), then the
    known words in the given order, then one id per character in ``CHARS``
    (written ``#c``). Text is lower-cased and split into words, numbers and
    punctuation; a word not in the vocabulary is spelled out character by
    character followed by ``<w>``; a character outside ``CHARS`` becomes
    ``<unk>``. Sequences longer than ``max_len`` are cut at the end.
    """

    def __init__(self, words: list[str] | None = None, max_len: int = 48):
        if words is None:
            words = world_words()
        words = [str(w).lower() for w in words]
        if len(set(words)) != len(words):
            raise ValueError("Tokenizer: words contain duplicates; pass each word once")
        if int(max_len) < 1:
            raise ValueError(f"Tokenizer: max_len must be >= 1, got {max_len}")
        self.words = words
        self.max_len = int(max_len)
        self.itos = list(SPECIALS) + words + [f"#{c}" for c in CHARS]
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self._word_id = {w: len(SPECIALS) + i for i, w in enumerate(words)}
        self._char_id = {c: len(SPECIALS) + len(words) + i for i, c in enumerate(CHARS)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    pad_id, unk_id, word_end_id = 0, 1, 2

    def tokens(self, text: str) -> list[int]:
        """Unpadded ids of ``text`` (not cut to ``max_len``)."""
        if not isinstance(text, str):
            raise TypeError(f"Tokenizer: text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        for w in _TOKEN_RE.findall(text.lower()):
            if w in self._word_id:
                ids.append(self._word_id[w])
            else:
                ids += [self._char_id.get(c, self.unk_id) for c in w]
                ids.append(self.word_end_id)
        return ids

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> LongTensor ``[max_len]``, zero-padded, cut at ``max_len``."""
        ids = self.tokens(text)[: self.max_len]
        out = torch.zeros(self.max_len, dtype=torch.long)
        out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def encode_batch(self, texts: list[str]) -> torch.Tensor:
        """List of texts -> LongTensor ``[B, max_len]``."""
        if isinstance(texts, str):
            raise TypeError("Tokenizer.encode_batch: expected a list of str, got one str; use encode(text)")
        return torch.stack([self.encode(t) for t in texts]) if texts else torch.zeros(0, self.max_len, dtype=torch.long)

    def decode(self, ids) -> str:
        """Ids -> text (inverse of ``encode`` up to spacing and case)."""
        out, spelled = [], ""
        for i in torch.as_tensor(ids).tolist():
            s = self.itos[i] if 0 <= i < len(self.itos) else UNK
            if s == PAD:
                continue
            if s.startswith("#") and len(s) == 2:
                spelled += s[1]
            elif s == WORD_END:
                out.append(spelled)
                spelled = ""
            else:
                if spelled:
                    out.append(spelled)
                    spelled = ""
                out.append(s)
        if spelled:
            out.append(spelled)
        return " ".join(out)

    def to_json(self) -> str:
        return json.dumps({"words": self.words, "max_len": self.max_len})

    @classmethod
    def from_json(cls, s: str) -> "Tokenizer":
        d = json.loads(s)
        return cls(words=d["words"], max_len=d["max_len"])


def prompt_tokenizer(max_len: int = 48) -> Tokenizer:
    """Tokenizer for prompts and audio captions: the world's words."""
    return Tokenizer(world_words(), max_len=max_len)


def transcript_tokenizer(max_len: int = 32) -> Tokenizer:
    """Tokenizer for syllable transcripts: one id per world syllable (others spelled out)."""
    return Tokenizer(world_syllables(), max_len=max_len)


def _check_ids(tokens: torch.Tensor, vocab_size: int, max_len: int, who: str) -> None:
    if not torch.is_tensor(tokens) or tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int64):
        shape = tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens).__name__
        raise ValueError(f"{who}: tokens must be an integer tensor [B, L], got {shape}; "
                         "build it with Tokenizer.encode_batch(texts)")
    if tokens.shape[1] > max_len:
        raise ValueError(f"{who}: sequence length {tokens.shape[1]} exceeds max_len={max_len}; "
                         "cut it (Tokenizer(max_len=...)) or build the encoder with a larger max_len")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"{who}: token ids must lie in 0..{vocab_size - 1}, got "
                         f"{int(tokens.min())}..{int(tokens.max())}; was it made by another tokenizer?")


class TextBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)); x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :]                                  # attend to real tokens only
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Tiny prompt encoder: ids ``[B, L]`` -> context ``[B, L, dim]`` (padded rows zero)."""

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, max_len: int = 48, heads: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"TextEncoder: dim={dim} must be divisible by heads={heads}")
        self.config = dict(vocab_size=vocab_size, dim=dim, layers=layers, max_len=max_len, heads=heads)
        self.vocab_size, self.dim, self.max_len = vocab_size, dim, max_len
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(TextBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_ids(tokens, self.vocab_size, self.max_len, "TextEncoder")
        tokens = tokens.to(self.token_embedding.weight.device).long()
        keep = tokens != 0
        # a row of only padding attends to itself so softmax stays finite (output is zeroed anyway)
        attend = keep | ~keep.any(1, keepdim=True)
        x = self.token_embedding(tokens) + self.pos_embedding[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, attend)
        return self.norm(x) * keep[..., None].to(x.dtype)


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt-V2), over the sequence axis."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x):
        g = x.norm(p=2, dim=1, keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * n) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """ConvNeXt-V2 1-D block (F5-TTS text encoder): depthwise conv, norm, MLP with GRN."""

    def __init__(self, dim: int, kernel_size: int = 7, mult: int = 2):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mult * dim)
        self.grn = GRN(mult * dim)
        self.pwconv2 = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = x * keep[..., None]
        h = self.dwconv(h.transpose(1, 2)).transpose(1, 2)
        h = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(h)))))
        return x + h


class TranscriptEncoder(nn.Module):
    """Syllable-transcript encoder (F5-TTS style): ids ``[B, L]`` -> ``[B, L, dim]``, padded rows zero."""

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, max_len: int = 32, kernel_size: int = 7):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, dim=dim, layers=layers, max_len=max_len, kernel_size=kernel_size)
        self.vocab_size, self.dim, self.max_len = vocab_size, dim, max_len
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, kernel_size) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_ids(tokens, self.vocab_size, self.max_len, "TranscriptEncoder")
        tokens = tokens.to(self.token_embedding.weight.device).long()
        keep = (tokens != 0).to(self.pos_embedding.dtype)
        x = self.token_embedding(tokens) + self.pos_embedding[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, keep)
        return self.norm(x) * keep[..., None]


# --------------------------------------------------------------------------- #
# save / load
# --------------------------------------------------------------------------- #

_ENCODERS = {"TextEncoder": TextEncoder, "TranscriptEncoder": TranscriptEncoder}


def save_encoder(module: nn.Module, path: str, tokenizer: Tokenizer | None = None) -> None:
    """Save a ``TextEncoder`` / ``TranscriptEncoder`` (and its tokenizer) to safetensors."""
    from .weightfile import save_safetensors

    kind = type(module).__name__
    if kind not in _ENCODERS:
        raise TypeError(f"save_encoder: expected a TextEncoder or TranscriptEncoder, got {kind}")
    meta = {"kind": kind, "config": json.dumps(module.config)}
    if tokenizer is not None:
        if tokenizer.vocab_size != module.vocab_size:
            raise ValueError(f"save_encoder: tokenizer vocab_size {tokenizer.vocab_size} != "
                             f"encoder vocab_size {module.vocab_size}")
        meta["tokenizer"] = tokenizer.to_json()
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_safetensors(state, path, meta)


def load_encoder(path: str, device="cpu") -> tuple[nn.Module, Tokenizer | None]:
    """Load ``(encoder, tokenizer or None)`` written by ``save_encoder``."""
    from .weightfile import read_safetensors

    state, meta = read_safetensors(path, "text encoder weights")
    kind = meta.get("kind")
    if kind not in _ENCODERS:
        raise ValueError(f"load_encoder: {path!r} has no TextEncoder/TranscriptEncoder metadata "
                         f"(kind={kind!r}); it was not written by harmony.text.save_encoder")
    module = _ENCODERS[kind](**json.loads(meta["config"]))
    module.load_state_dict(state, strict=True)
    tok = Tokenizer.from_json(meta["tokenizer"]) if "tokenizer" in meta else None
    return module.to(device).eval(), tok
