"""umT5 text encoder (harmony/umt5.py): Ovi's prompt, the single-file layouts, Wan's padding.

A tiny random umT5 and a tiny word-level tokenizer are made here; nothing is downloaded.
The reference forward below is written from the T5 formulas (RMS norm, relative position
buckets, gated-GELU feed-forward) in Wan's parameter names, so a wrong name mapping fails."""
import math
import os
import pickle
import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")
from safetensors.torch import save_file  # noqa: E402

from harmony import umt5  # noqa: E402

from realfiles import UMT5_SIZE, UMT5_WORDS, umt5_wan_state, write_umt5_tokenizer  # noqa: E402

WORDS = UMT5_WORDS
D, HEADS, LAYERS, FF, BUCKETS = (UMT5_SIZE[k] for k in ("dim", "heads", "layers", "ffn", "buckets"))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_umt5_tokenizer(tmp_path_factory.mktemp("umt5_tok"))


@pytest.fixture(scope="module")
def wan_state():
    return umt5_wan_state()


def _bucket(rel, num_buckets, max_dist=128):
    half = num_buckets // 2
    out = (rel > 0).long() * half
    n = rel.abs()
    exact = half // 2
    big = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_dist / exact) * (half - exact)).long()
    return out + torch.where(n < exact, n, big.clamp(max=half - 1))


def _rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def reference(sd, ids, mask):
    """Wan's T5 encoder maths on Wan-named weights: [B, L, D]."""
    x = sd["token_embedding.weight"][ids]
    L = ids.shape[1]
    pos = torch.arange(L)
    rel = pos[None, :] - pos[:, None]  # key - query
    for i in range(LAYERS):
        p = f"blocks.{i}."
        h = _rms(x, sd[p + "norm1.weight"])
        q, k, v = (
            (h @ sd[p + f"attn.{n}.weight"].T).view(*h.shape[:2], HEADS, -1).transpose(1, 2) for n in "qkv")
        bias = sd[p + "pos_embedding.embedding.weight"][_bucket(rel, BUCKETS)].permute(2, 0, 1)
        s = q @ k.transpose(-1, -2) + bias  # T5: no 1/sqrt(d) scale
        s = s.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(*h.shape)
        x = x + a @ sd[p + "attn.o.weight"].T
        h = _rms(x, sd[p + "norm2.weight"])
        gate = torch.nn.functional.gelu(h @ sd[p + "ffn.gate.0.weight"].T, approximate="tanh")
        x = x + ((h @ sd[p + "ffn.fc1.weight"].T) * gate) @ sd[p + "ffn.fc2.weight"].T
    return _rms(x, sd["norm.weight"])


def _hf_names(sd):
    return {umt5._wan_to_hf(k): v for k, v in sd.items()}


TEXTS = ["a red ball bounces", "hello there <S> two loud thud <E> Audio: thud"]


def test_ovi_prompt_from_separate_inputs():
    assert umt5.ovi_prompt("A man smiles.", "Hello there.", "Clear male speech.") == \
        "A man smiles. <S>Hello there.<E> Audio: Clear male speech."
    assert umt5.ovi_prompt("A man smiles.", ["Hi.", "Bye."], "Speech.", caption_tags="audcap") == \
        "A man smiles. <S>Hi.<E> <S>Bye.<E> <AUDCAP>Speech.<ENDAUDCAP>"
    assert umt5.ovi_prompt("Rain.", None, None) == "Rain."
    assert umt5.ovi_prompt("", "<S>kept<E>", "") == "<S>kept<E>"
    with pytest.raises(ValueError, match="caption_tags"):
        umt5.ovi_prompt("x", caption_tags="AUDIO")


def test_clean_text_like_wan():
    assert umt5.clean_text("  a&amp;amp;b \n\t c  ") == "a&b c"


def test_wan_pth_matches_reference_and_pads_with_zeros(tmp_path, tokenizer_dir, wan_state):
    path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(wan_state, path)
    enc = umt5.load_umt5(path, tokenizer_dir, dtype=torch.float32)
    assert enc.model.config.num_heads == HEADS and enc.model.config.num_layers == LAYERS and enc.dim == D
    emb, lengths = enc.encode(TEXTS)
    assert emb.shape == (2, umt5.TEXT_LEN, D)
    ids, mask = enc.tokens(TEXTS)
    assert lengths.tolist() == [5, 10]  # words + </s>
    assert ids[0, 4].item() == 1 and ids[0, 5:].eq(0).all()  # </s> then <pad>
    ref = reference(wan_state, ids, mask)
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(emb[i, :n], ref[i, :n], atol=1e-4), (emb[i, :n] - ref[i, :n]).abs().max()
        assert emb[i, n:].abs().max() == 0  # Wan: rows past the tokens are zeros (then attended by the DiT)
    alone, _ = enc.encode([TEXTS[0]])  # the padding of a longer neighbour changes nothing
    assert torch.allclose(alone[0], emb[0], atol=1e-5)


def test_comfy_layouts_load_the_same_weights(tmp_path, tokenizer_dir, wan_state):
    hf = _hf_names(wan_state)
    plain = tmp_path / "umt5_xxl_fp32.safetensors"
    save_file({k: v.contiguous() for k, v in hf.items()}, plain)
    pth = tmp_path / "enc.pth"
    torch.save(wan_state, pth)
    a, _ = umt5.load_umt5(plain, tokenizer_dir, dtype=torch.float32).encode(TEXTS)
    b, _ = umt5.load_umt5(pth, tokenizer_dir, dtype=torch.float32).encode(TEXTS)
    assert torch.equal(a, b)
    # ComfyUI scaled fp8: 2-D weights e4m3fn with a per-tensor scale; output = reference on the dequantised weights
    scaled, deq = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, {}
    for k, v in hf.items():
        if v.dim() == 2 and "relative_attention_bias" not in k and k != "shared.weight":
            s = v.abs().max() / 448.0
            q = (v / s).to(torch.float8_e4m3fn)
            scaled[k], scaled[k[:-len("weight")] + "scale_weight"] = q, s.reshape(())
            deq[k] = q.float() * s
        else:
            scaled[k] = deq[k] = v
    fp8 = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(scaled, fp8)
    enc = umt5.load_umt5(fp8, tokenizer_dir, dtype=torch.float32)
    c, n = enc.encode(TEXTS)
    wan_deq = {w: deq[umt5._wan_to_hf(w)] for w in wan_state}
    ids, mask = enc.tokens(TEXTS)
    ref = reference(wan_deq, ids, mask)
    assert torch.allclose(c[1, :n[1]], ref[1, :n[1]], atol=1e-4)
    assert not torch.allclose(c, a, atol=1e-4)  # fp8 really changed the weights
    bf16, _ = umt5.load_umt5(plain, tokenizer_dir, dtype=torch.bfloat16).encode(TEXTS)
    assert bf16.dtype == torch.float32 and (bf16 - a).abs().mean() < 0.02  # bf16 weights and compute


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED_UMT5",))


def test_crafted_pickle_refused(tmp_path, tokenizer_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"token_embedding.weight": _Boom()}, f)
    from harmony.weightfile import WeightFileError

    with pytest.raises(WeightFileError, match="weights_only=True"):
        umt5.load_umt5(path, tokenizer_dir)
    assert not (tmp_path / "PWNED_UMT5").exists()


def test_missing_and_wrong_inputs(tmp_path, tokenizer_dir, wan_state):
    with pytest.raises(FileNotFoundError, match="umt5_xxl_bf16.safetensors"):
        umt5.load_umt5(tmp_path / "nope.safetensors", tokenizer_dir)
    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(umt5.UMT5Error, match="is not a umT5 encoder"):
        umt5.load_umt5(other, tokenizer_dir)
    with pytest.raises(FileNotFoundError, match="google/umt5-xxl"):
        umt5.load_umt5(other, tmp_path / "no_tokenizer")
    (tmp_path / "empty").mkdir()
    with pytest.raises(umt5.UMT5Error, match="neither tokenizer.json nor spiece.model"):
        umt5.load_tokenizer(tmp_path / "empty")


@pytest.mark.slow
def test_package_imports_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import harmony, harmony.umt5, harmony.families, harmony.pipeline\n"
            "try:\n    harmony.umt5.require_transformers()\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert "pip install transformers sentencepiece" in out.stdout
