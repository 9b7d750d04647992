"""Tokenizers and tiny text / transcript encoders (harmony/text.py)."""
import torch
import pytest

from harmony.text import (CHARS, TextEncoder, Tokenizer, TranscriptEncoder, load_encoder, prompt_tokenizer,
                          save_encoder, transcript_tokenizer)
from harmony.world.scene import sample_scene
from harmony.world.vocab import tokenize, vocabulary


def test_tokenizer_covers_world_prompts_without_fallback():
    tok = prompt_tokenizer(max_len=64)
    assert tok.vocab_size == 3 + len(vocabulary()) + len(CHARS)
    first_char_id = 3 + len(tok.words)
    for seed in range(40):
        scene = sample_scene(seed)
        for text in (scene.prompt, scene.audio_caption):
            ids = tok.tokens(text)
            assert len(ids) == len(tokenize(text))
            assert all(3 <= i < first_char_id for i in ids), text   # every word known, no spelling
            assert tok.decode(ids).replace(" ", "") == "".join(tokenize(text))


def test_tokenizer_is_deterministic_and_pads():
    a, b = prompt_tokenizer(), prompt_tokenizer()
    assert a.itos == b.itos
    x = a.encode("A red ball bounces twice.")
    assert x.dtype == torch.long and x.shape == (48,)
    assert (x[:6] > 0).all() and (x[6:] == 0).all()   # 5 words + "."
    assert torch.equal(x, b.encode("a RED ball bounces twice ."))


def test_unknown_words_fall_back_to_characters():
    tok = Tokenizer(["red", "ball"], max_len=16)
    ids = tok.tokens("red zebra ball")
    assert ids[0] == tok.stoi["red"] and ids[-1] == tok.stoi["ball"]
    assert ids[1:7] == [tok.stoi[f"#{c}"] for c in "zebra"] + [tok.word_end_id]
    assert tok.decode(ids) == "red zebra ball"
    assert tok.tokens("red \u00e9") == [tok.stoi["red"], tok.unk_id, tok.word_end_id]


def test_tokenizer_cuts_long_text_and_roundtrips_json():
    tok = Tokenizer(["la"], max_len=4)
    assert tok.encode("la la la la la la").tolist() == [3, 3, 3, 3]
    assert Tokenizer.from_json(tok.to_json()).itos == tok.itos
    with pytest.raises(TypeError, match="str"):
        tok.encode(["la"])


def test_transcript_tokenizer_one_id_per_syllable():
    tok = transcript_tokenizer()
    scene = sample_scene(3, split="speech")
    ids = tok.tokens(scene.transcript)
    assert len(ids) == len(scene.face.syllables) and tok.decode(ids) == scene.transcript


def test_text_encoder_shapes_padding_and_masking():
    torch.manual_seed(0)
    tok = prompt_tokenizer()
    enc = TextEncoder(tok.vocab_size).eval()
    ids = tok.encode_batch(["a red ball bounces twice.", "a blue lamp flashes once on the left."])
    out = enc(ids)
    assert out.shape == (2, 48, 64)
    n0 = int((ids[0] != 0).sum())
    assert out[0, n0:].abs().max() == 0 and out[0, :n0].abs().min() > 0
    # padding must not leak into real rows: a longer pad tail gives the same real rows
    enc_long = TextEncoder(tok.vocab_size, max_len=64).eval()
    enc_long.load_state_dict({**enc.state_dict(), "pos_embedding": torch.cat(
        [enc.pos_embedding.data, torch.zeros(16, 64)])})
    ids64 = torch.cat([ids, torch.zeros(2, 16, dtype=torch.long)], 1)
    torch.testing.assert_close(enc_long(ids64)[:, :48], out)
    # empty prompt -> all zeros, finite
    empty = enc(tok.encode_batch([""]))
    assert torch.isfinite(empty).all() and empty.abs().max() == 0
    # gradients flow (trained jointly with the diffusion model)
    enc(ids).sum().backward()
    assert enc.token_embedding.weight.grad.abs().sum() > 0


def test_transcript_encoder_shapes_and_padding():
    torch.manual_seed(0)
    tok = transcript_tokenizer()
    enc = TranscriptEncoder(tok.vocab_size).eval()
    ids = tok.encode_batch(["ba di ko", "mu"])
    out = enc(ids)
    assert out.shape == (2, 32, 64)
    assert out[1, 1:].abs().max() == 0 and out[0, :3].abs().min() > 0
    # order matters (positions), so "ba di" != "di ba"
    a, b = enc(tok.encode_batch(["ba di", "di ba"]))
    assert (a[0] - b[1]).abs().max() > 1e-4


def test_encoders_reject_bad_ids():
    enc = TextEncoder(10, max_len=8)
    with pytest.raises(ValueError, match="0..9"):
        enc(torch.tensor([[1, 12]]))
    with pytest.raises(ValueError, match="max_len=8"):
        enc(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        enc(torch.ones(9, dtype=torch.long))


@pytest.mark.parametrize("cls,tok_fn", [(TextEncoder, prompt_tokenizer), (TranscriptEncoder, transcript_tokenizer)])
def test_save_load_roundtrip(tmp_path, cls, tok_fn):
    torch.manual_seed(1)
    tok = tok_fn()
    enc = cls(tok.vocab_size, dim=32, layers=1).eval()
    path = str(tmp_path / "enc.safetensors")
    save_encoder(enc, path, tok)
    enc2, tok2 = load_encoder(path)
    assert type(enc2) is cls and tok2.itos == tok.itos
    ids = tok.encode_batch(["ba di ko", "a red ball"])
    torch.testing.assert_close(enc2(ids), enc(ids))


def test_load_encoder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_encoder(str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "enc.pt"
    bad.write_bytes(b"\x80\x04\x95 not a safetensors file at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_encoder(str(bad))
