"""Checkpoints: safetensors round trip, storage dtypes, fp8 / scaled fp8, clear errors."""
import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from harmony import checkpoint
from harmony.checkpoint import CheckpointError, convert, load_model, save_model, weight_bytes
from harmony.config import get_config
from harmony.model import Conditioning, HarmonyModel

# fp8 output error bounds: relative L2 of the tiny model's outputs vs fp32 weights.
# Measured over seeds 0-3 (tests/test_checkpoint.py helpers, compute in fp32):
#   bf16 weights 0.3-0.6 %, e4m3fn 4.0-7.8 %, e5m2 6.1-12.7 % (seed 0: 4.8 / 9.1 %).
# Rounding to a 3-bit (e4m3) / 2-bit (e5m2) mantissa gives a per-weight relative
# error of ~2^-4/sqrt(3) = 3.6 % / 7.2 % RMS, which the 4 layers carry to the
# output at about that size. The bounds sit ~1.5-2x above the worst seed;
# a lost or wrong scale, or unclamped overflow, gives errors of order 1 or NaN.
FP8_REL_L2_BOUND = {"fp8_e4m3fn": 0.12, "fp8_e5m2": 0.25}


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-degenerate weights: fan-in scaled matrices, norms 1 + 0.1 N, biases 0.02 N."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if name.endswith("modulation"):
                p.copy_(n / p.shape[-1] ** 0.5)
            elif p.dim() == 1 and "norm" in name:
                p.copy_(1 + 0.1 * n)
            elif p.dim() == 1:
                p.copy_(0.02 * n)
            else:
                p.copy_(n / (p[0].numel()) ** 0.5)
    return model


def tiny_model(seed: int = 0) -> HarmonyModel:
    torch.manual_seed(seed)
    return randomize_(HarmonyModel(get_config("tiny")), seed).eval()


def tiny_inputs(cfg, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    v, a = cfg.video, cfg.audio
    video = torch.randn(1, v.in_dim, 3, 8, 8, generator=g)
    audio = torch.randn(1, 12, a.in_dim, generator=g)
    cond = Conditioning(video_context=torch.randn(1, 5, v.text_dim, generator=g),
                        audio_context=torch.randn(1, 4, a.text_dim, generator=g))
    return video, audio, torch.tensor([700.0]), torch.tensor([300.0]), cond


def run(model, inputs):
    with torch.no_grad():
        return model(*inputs)


def rel_l2(x, ref):
    return ((x.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def fp32_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(model, path, metadata={"note": "test"})
    return path


def test_round_trip_is_exact(model, fp32_file):
    loaded = load_model(fp32_file)
    want, got = model.state_dict(), loaded.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    inputs = tiny_inputs(model.cfg)
    for a, b in zip(run(model, inputs), run(loaded, inputs)):
        assert torch.equal(a, b)
    with safe_open(fp32_file, "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["harmony_config"]) == model.cfg.to_dict()
    assert meta["harmony_format_version"] == checkpoint.FORMAT_VERSION and meta["note"] == "test"


def test_load_casts_to_storage_dtype(model, fp32_file):
    loaded = load_model(fp32_file, dtype="bf16")
    from harmony.tower import computes_in_fp32
    for k, t in loaded.state_dict().items():  # time embedding / modulation: bf16 values kept in fp32
        assert t.dtype == (torch.float32 if computes_in_fp32(k) else torch.bfloat16), k
        assert torch.equal(t, model.state_dict()[k].to(torch.bfloat16).to(t.dtype)), k


def test_fp8_storage_halves_block_weights(model, tmp_path):
    bf16_file = tmp_path / "bf16.safetensors"
    save_model(model, bf16_file, dtype="bf16")
    bf16 = load_model(bf16_file, dtype="bf16")
    quantised = set(checkpoint.quantizable_weights(bf16))
    ref = bf16.state_dict()
    q_ref = sum(ref[k].numel() * ref[k].element_size() for k in quantised)
    share = q_ref / weight_bytes(bf16)  # tiny: ~0.57 (its audio ConvMLP patch embedding is large)
    for dtype in ("fp8_e4m3fn", "fp8_e5m2"):
        fp8 = load_model(bf16_file, dtype=dtype)
        sd = fp8.state_dict()
        q_bytes = sum(sd[k].numel() * sd[k].element_size() for k in quantised)
        assert q_bytes * 2 == q_ref  # every block Linear weight: 1 byte instead of 2
        # the rest (norms, modulation, embeddings, head) keeps bf16; + one fp32 scale per weight
        ratio = weight_bytes(fp8) / weight_bytes(bf16)
        assert ratio == pytest.approx(1 - share / 2 + 4 * len(quantised) / weight_bytes(bf16), rel=1e-9)
        assert ratio < 0.75


def test_fp8_is_about_half_of_bf16_at_5b_size():
    """At the public 5B size the block Linear weights are ~94% of the bytes: fp8 ~= 0.53 x bf16."""
    meta = checkpoint.build_empty_model(get_config("5b"))  # 12.8 B parameters, no memory
    assert all(p.is_meta for p in meta.parameters())
    sd = meta.state_dict()
    quantised = set(checkpoint.quantizable_weights(meta))
    bf16 = sum(2 * t.numel() for t in sd.values())
    fp8 = sum((1 if k in quantised else 2) * t.numel() for k, t in sd.items()) + 4 * len(quantised)
    assert 0.5 < fp8 / bf16 < 0.54


def test_fp8_quantises_block_linears_only(model, fp32_file):
    loaded = load_model(fp32_file, dtype="fp8_e4m3fn")
    quantised = set(checkpoint.quantizable_weights(loaded))
    assert any(".blocks.0.self_attn.q.weight" in k for k in quantised)
    assert any(".blocks.0.ffn.0.weight" in k for k in quantised)
    for k, t in loaded.state_dict().items():
        if k in quantised:
            assert t.dtype == torch.float8_e4m3fn, k
        elif not k.endswith("scale_weight"):
            assert t.dtype == torch.float32, k  # norms, biases, modulation, embeddings, head


@pytest.mark.parametrize("dtype", ["fp8_e4m3fn", "fp8_e5m2"])
def test_fp8_output_error(model, fp32_file, dtype):
    inputs = tiny_inputs(model.cfg)
    ref = run(model, inputs)
    out = run(load_model(fp32_file, dtype=dtype), inputs)
    errors = [rel_l2(o, r) for o, r in zip(out, ref)]
    print(dtype, "rel-L2 (video, audio):", errors)
    assert all(0 < e < FP8_REL_L2_BOUND[dtype] for e in errors), errors


def test_scaled_fp8_file_round_trip(model, tmp_path):
    path = tmp_path / "scaled.safetensors"
    save_model(model, path, fp8="scaled_e4m3fn")
    raw = load_file(path)
    assert "scaled_fp8" in raw and raw["scaled_fp8"].dtype == torch.float8_e4m3fn
    quantised = checkpoint.quantizable_weights(model)
    for k in quantised:
        scale_key = k[: -len("weight")] + "scale_weight"
        assert raw[k].dtype == torch.float8_e4m3fn and scale_key in raw
    assert raw["video_model.head.head.weight"].dtype == torch.float32

    loaded = load_model(path)  # "auto": stays scaled fp8
    ref = model.state_dict()
    for k in quantised:
        module = loaded.get_submodule(k.rsplit(".", 1)[0])
        assert module.weight.dtype == torch.float8_e4m3fn and module.scale_weight.numel() == 1
        real = module.weight.float() * module.scale_weight
        # e4m3: 3 mantissa bits -> relative rounding error <= 2^-4 of the value,
        # plus subnormal steps of 2^-9 * scale near zero.
        tol = ref[k].abs() * 2 ** -4 + module.scale_weight * 2 ** -9
        assert ((real - ref[k]).abs() <= tol + 1e-12).all(), k
    # re-saving a scaled model keeps it bit-identical
    again = tmp_path / "again.safetensors"
    save_model(loaded, again)
    raw2 = load_file(again)
    assert set(raw2) == set(raw) and all(torch.equal(raw2[k].float(), raw[k].float()) for k in raw)
    # dequantising on load gives the same real weights
    deq = load_model(path, dtype="fp32")
    k = quantised[0]
    m = loaded.get_submodule(k.rsplit(".", 1)[0])
    assert torch.equal(deq.state_dict()[k], m.weight.float() * m.scale_weight)


@pytest.mark.parametrize("fp8", ["e4m3fn", "e5m2"])
def test_plain_fp8_file(model, tmp_path, fp8):
    path = tmp_path / f"{fp8}.safetensors"
    save_model(model, path, fp8=fp8)
    raw = load_file(path)
    assert "scaled_fp8" not in raw and not any(k.endswith("scale_weight") for k in raw)
    k = checkpoint.quantizable_weights(model)[0]
    assert raw[k].dtype == checkpoint.FP8_FORMATS[fp8][0]
    assert load_model(path).state_dict()[k].dtype == raw[k].dtype


def test_convert(fp32_file, tmp_path):
    out = tmp_path / "converted.safetensors"
    convert(fp32_file, out, fp8="scaled_e4m3fn")
    raw = load_file(out)
    assert "scaled_fp8" in raw
    assert out.stat().st_size < 0.6 * fp32_file.stat().st_size
    with pytest.raises(ValueError, match="is the input file"):
        convert(fp32_file, fp32_file, fp8="e4m3fn")


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.safetensors"):
        load_model(tmp_path / "nothere.safetensors")


@pytest.mark.parametrize("name", ["weights.pt", "weights.safetensors"])
def test_pickle_file_is_refused_without_unpickling(tmp_path, name):
    path = tmp_path / name

    class Boom:  # unpickling this would raise; the loader must never get that far
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(CheckpointError, match="(?i)convert it to safetensors"):
        load_model(path)


def test_torch_save_zip_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="zip archive"):
        load_model(path)


def test_missing_and_unexpected_keys_are_listed(model, tmp_path):
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"harmony_config": json.dumps(model.cfg.to_dict()), "harmony_format_version": "1"}
    dropped = [k for k in sd if ".blocks.1." in k]  # listed in model order
    for k in dropped:
        del sd[k]
    sd["extra.thing.weight"] = torch.zeros(3)
    path = tmp_path / "bad_keys.safetensors"
    save_file(sd, path, metadata=meta)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert f"missing from the file ({len(dropped)})" in msg and dropped[0] in msg
    assert "more)" in msg  # long lists are cut after the first ten
    assert "unexpected in the file (1): extra.thing.weight" in msg
    assert "hint:" in msg


def test_video_only_checkpoint_gets_a_hint(model, tmp_path):
    """A bare Wan2.2 WanModel file (video tower only, no prefix) is named as such."""
    sd = {k[len("video_model."):]: v.contiguous() for k, v in model.state_dict().items()
          if k.startswith("video_model.") and "_fusion" not in k}
    path = tmp_path / "wan.safetensors"
    save_file(sd, path)
    with pytest.raises(CheckpointError, match=r"this looks like a Wan \(2.1 or 2.2\) video-only checkpoint"):
        load_model(path, config="tiny")


@pytest.mark.slow
def test_ovi_layout_loads_by_key_mapping(tmp_path):
    """Ovi's names (``blocks.N.modulation.modulation``, ComfyUI's ``model.diffusion_model.`` prefix) load."""
    from harmony import keymap

    ovi_like = randomize_(HarmonyModel(get_config("tiny-global"))).eval()
    sd = {"model.diffusion_model." + keymap.to_upstream(k, "ovi"): v.contiguous()
          for k, v in ovi_like.state_dict().items()}
    assert any(k.endswith(".modulation.modulation") for k in sd)
    path = tmp_path / "ovi.safetensors"
    save_file(sd, path)
    loaded = load_model(path, config="tiny-global")
    for k, v in ovi_like.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_wrong_shape_names_key_and_shapes(model, tmp_path):
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    key = "audio_model.blocks.0.ffn.0.weight"
    sd[key] = torch.zeros(7, sd[key].shape[1])
    path = tmp_path / "bad_shape.safetensors"
    save_file(sd, path, metadata={"harmony_config": json.dumps(model.cfg.to_dict())})
    with pytest.raises(CheckpointError, match=rf"{key}: file \[7, {sd[key].shape[1]}\] vs model \["):
        load_model(path)


def test_unknown_dtype_lists_valid_ones(fp32_file):
    with pytest.raises(ValueError, match="unknown dtype 'fp4'.*bf16.*fp8_e4m3fn"):
        load_model(fp32_file, dtype="fp4")


def test_config_needed_without_metadata(model, tmp_path):
    path = tmp_path / "nometa.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    with pytest.raises(CheckpointError, match="Pass config="):
        load_model(path)
    loaded = load_model(path, config="tiny")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_truncated_file(fp32_file, tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(fp32_file.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_model(path)


# ------------------------------------------------------------------ issue 21: corrupt and lying files, no mapping


def _safetensors_bytes(entries: dict, data: bytes = b"", meta=None) -> bytes:
    """A safetensors file written by hand: 8-byte little-endian header length, JSON header, data."""
    import struct

    header = dict(entries, **({"__metadata__": meta} if meta is not None else {}))
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _two_tensors() -> bytes:
    return _safetensors_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16))


BAD_FILES = {
    "truncated": (lambda: _two_tensors()[:-5],
                  r"truncated: \d+ bytes of \d+ bytes: the file is truncated or damaged \(tensor 'b', F32 \[2\], ends "
                  r"at byte \d+, past the end of the file\); download it again$"),
    "offset past the end": (lambda: _safetensors_bytes({"w": {"dtype": "BF16", "shape": [4096],
                                                              "data_offsets": [0, 8192]}}, bytes(16)),
                            r"truncated: .* past the end of the file\); download it again$"),
    "unknown dtype": (lambda: _safetensors_bytes({"w": {"dtype": "F7_WHAT", "shape": [2], "data_offsets": [0, 2]}},
                                                 bytes(2)),
                      r"tensor 'w' has dtype 'F7_WHAT', which is not one this reader knows \(BOOL, U8, .*\): .* "
                      r"download it again, or convert it"),
    "10^12-element shape": (lambda: _safetensors_bytes({"w": {"dtype": "F32", "shape": [1000000, 1000000],
                                                              "data_offsets": [0, 16]}}, bytes(16)),
                            r"tensor 'w' is F32 \[1000000, 1000000\] \(1,000,000,000,000 values, 4\.0 TB\) but its "
                            r"data_offsets span 16 bytes: the header is damaged; download it again$"),
    "10^12 elements, offsets agree": (lambda: _safetensors_bytes({"w": {"dtype": "F32", "shape": [1000000, 1000000],
                                                                        "data_offsets": [0, 4 * 10**12]}}, bytes(16)),
                                      r"truncated: \d+ bytes of 4\.0 TB: the file is truncated or damaged"),
    "overlapping tensors": (lambda: _safetensors_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                                                       bytes(12)),
                            r"tensors 'a' and 'b' overlap"),
    "header cut": (lambda: _safetensors_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})[:20],
                   r"truncated or damaged: its header alone is \d+ bytes but the file holds 20 bytes"),
    "header not JSON": (lambda: b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
                        r"is not a safetensors file \(its header is not safetensors JSON"),
    "metadata not strings": (lambda: _safetensors_bytes({}, meta={"x": 1}),
                             r"its __metadata__ is not a map of strings"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_corrupt_or_lying_file_is_one_clear_error(tmp_path, case):
    from harmony import families
    from harmony.checkpoint import read_config
    from harmony.weightfile import WeightFileError
    from harmony.pipeline import model_limits

    make, pattern = BAD_FILES[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(make())
    for call in (lambda: load_model(path, what="--model"), lambda: read_config(path, what="--model"),
                 lambda: model_limits(str(path), "--model")):
        with pytest.raises(WeightFileError, match=rf"^--model {path}[: ].*{pattern}") as e:
            call()
        assert e.value.what == "--model" and e.value.path == str(path) and isinstance(e.value, CheckpointError)
    if not case.startswith(("truncated", "offset", "10^12 elements")):
        with pytest.raises(WeightFileError, match=pattern):
            families.detect(path)
    else:  # identifying a partial download still works, and says it is partial
        assert "download it again" in families.describe(path)


def test_header_over_100_mb_is_refused_without_reading_it(tmp_path):
    import os
    import struct

    from harmony.weightfile import WeightFileError

    path = tmp_path / "huge_header.safetensors"
    path.write_bytes(struct.pack("<Q", 200 * 10**6) + b"{")
    os.truncate(path, 8 + 200 * 10**6 + 16)  # sparse: nothing is really written
    with pytest.raises(WeightFileError, match=r"^checkpoint .*: its header claims 200\.0 MB, over the 100\.0 MB limit"):
        load_model(path)


def test_cli_names_the_model_flag_for_a_corrupt_file(tmp_path, capsys):
    import harmony.__main__ as cli

    path = tmp_path / "model.safetensors"
    path.write_bytes(BAD_FILES["unknown dtype"][0]())
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", "--model", str(path), "-o", str(tmp_path / "out.mp4")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"python -m harmony generate: error: --model {path}: tensor 'w' has dtype 'F7_WHAT'")
    assert "SafetensorError" not in err and not (tmp_path / "out.mp4").exists()


def test_weights_are_read_tensor_by_tensor_never_mapped(fp32_file, model, monkeypatch):
    """load_model reads each tensor with plain file reads: safe_open / mmap are never used."""
    import mmap

    import safetensors

    def refuse(*a, **k):
        raise AssertionError("the file was mapped")

    monkeypatch.setattr(safetensors, "safe_open", refuse)
    monkeypatch.setattr(checkpoint, "safe_open", refuse, raising=False)
    monkeypatch.setattr(mmap, "mmap", refuse)
    loaded = load_model(fp32_file)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
