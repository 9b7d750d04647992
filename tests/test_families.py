"""Family detection from the header (harmony.families) and loading real-layout files (tiny sizes)."""
import json
import os

import pytest
import torch

from harmony import families
from harmony.checkpoint import CheckpointError, build_empty_model, load_model
from harmony.config import get_config

import realfiles as rf


@pytest.fixture(scope="module")
def src():
    return rf.random_model("tiny-global", seed=3)


def _n_params(model):
    return sum(t.numel() for t in model.state_dict().values())


@pytest.mark.parametrize("prefix", ["", rf.COMFY_PREFIX])
@pytest.mark.parametrize("fp8,storage", [
    (None, "bf16"),
    ("e4m3fn", "fp8_e4m3fn without scales (as Ovi's model_fp8_e4m3fn.safetensors), other tensors bf16"),
    ("scaled_e4m3fn", "scaled fp8_e4m3fn (ComfyUI scaled fp8), other tensors bf16"),
])
def test_ovi_detected_from_header(tmp_path, src, prefix, fp8, storage):
    path = rf.write_ovi(tmp_path / "model.safetensors", src, prefix=prefix, fp8=fp8)
    found = families.detect(path)
    assert found.family == "ovi" and found.prefix == prefix
    assert found.config_name == "tiny-global" and found.interaction == "global"
    assert found.config_source == "tensor shapes"
    assert found.storage == storage
    assert found.params == _n_params(src)  # every Ovi tensor, scales not counted
    line = found.line()
    assert "\n" not in line and line.startswith("model.safetensors: Ovi fusion model")
    assert ("model.diffusion_model." in line) == bool(prefix)


def test_detection_reads_the_header_only(tmp_path, src):
    path = rf.write_ovi(tmp_path / "model.safetensors", src)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    with open(path, "r+b") as f:
        f.truncate(8 + n)  # every weight byte gone: only the header is left
    assert families.detect(path).config_name == "tiny-global"
    with pytest.raises(Exception):
        load_model(path)  # loading needs the weights


def test_wan22_alone_detected_and_refused(tmp_path, src):
    path = rf.write_wan22(tmp_path / "wan2.2_ti2v_5B_fp16.safetensors", src)
    found = families.detect(path)
    assert found.family == "wan2.2-ti2v-5b" and found.interaction is None
    video_params = sum(t.numel() for k, t in src.state_dict().items()
                       if k.startswith("video_model.") and "_fusion" not in k)
    assert found.params == video_params
    assert "video tower only" in found.line() and "not a Harmony model on its own" in found.line()
    with pytest.raises(CheckpointError, match="is a Wan video-only checkpoint"):
        load_model(path)


def test_wan22_real_size_named(tmp_path):
    """The header of a full-size Wan2.2-TI2V-5B DiT (shapes only, zero-length data is not needed)."""
    cfg = get_config("5b")
    shapes = {"video_model.patch_embedding.weight": (3072, 48, 1, 2, 2),
              "video_model.blocks.0.ffn.0.weight": (14336, 3072),
              "video_model.text_embedding.0.weight": (3072, 4096),
              "video_model.time_embedding.0.weight": (3072, 256)}
    shapes.update({f"video_model.blocks.{i}.norm3.weight": (3072,) for i in range(30)})
    assert families._matches(families.tower_sizes(shapes, "video_model"), cfg.video)
    shapes.pop("video_model.blocks.29.norm3.weight")  # 29 layers: not the 5B tower
    assert not families._matches(families.tower_sizes(shapes, "video_model"), cfg.video)


@pytest.mark.parametrize("config,fp8", [("tiny", None), ("tiny-global", "scaled_e4m3fn")])
def test_harmony_files_detected(tmp_path, config, fp8):
    model = rf.random_model(config)
    path = rf.write_harmony(tmp_path / "h.safetensors", model, fp8=fp8)
    found = families.detect(path)
    assert found.family == "harmony" and found.config_name == config
    assert found.config_source == "file metadata"
    assert found.interaction == get_config(config).interaction
    assert found.storage == ("bf16" if fp8 is None else "scaled fp8_e4m3fn (ComfyUI scaled fp8), other tensors bf16")
    assert found.params == _n_params(model)


@pytest.mark.parametrize("prefix,fp8", [("", None), (rf.COMFY_PREFIX, None), ("", "e4m3fn"),
                                        (rf.COMFY_PREFIX, "scaled_e4m3fn")])
def test_ovi_files_load_to_the_written_weights(tmp_path, src, prefix, fp8):
    path = rf.write_ovi(tmp_path / "model.safetensors", src, prefix=prefix, fp8=fp8)
    model = load_model(path, dtype="fp32")
    assert model.cfg == get_config("tiny-global")
    want = src.state_dict()
    for key, t in model.state_dict().items():
        ref = want[key].float()
        if fp8 is None or ref.dim() < 2 or "blocks" not in key:
            ref = ref.to(torch.bfloat16).float()  # the file stores bf16
            assert torch.equal(t, ref), key
        else:  # fp8 weights: within the format's relative step (e4m3: 3 mantissa bits)
            scale = ref.abs().max() if fp8.startswith("scaled") else 1.0
            assert (t - ref).abs().max() <= 2 ** -4 * max(ref.abs().max(), 1e-3) + 2 ** -9 * scale, key
    assert model.load_summary.startswith("model.safetensors: Ovi fusion model")
    assert model.fresh_keys == []


def test_gldi_from_ovi_lists_fresh_style_modules(tmp_path, src):
    path = rf.write_ovi(tmp_path / "model.safetensors", src)
    model = load_model(path, config="tiny", dtype="fp32")
    gldi_keys = set(build_empty_model(get_config("tiny")).state_dict())
    global_keys = set(build_empty_model(get_config("tiny-global")).state_dict())
    assert set(model.fresh_keys) == gldi_keys - global_keys
    assert all(".norm_style." in k or ".style_attn." in k for k in model.fresh_keys)
    n_layers = get_config("tiny").num_layers
    assert "initialised fresh (%d tensors" % len(model.fresh_keys) in model.load_summary
    assert len({k.split(".")[2] for k in model.fresh_keys}) == n_layers
    state = model.state_dict()
    for block in model.audio_model.blocks:  # identity init: the style branch adds exactly zero
        assert torch.count_nonzero(block.style_attn.o.weight) == 0 and torch.count_nonzero(block.style_attn.o.bias) == 0
        assert torch.equal(block.norm_style.weight, torch.ones_like(block.norm_style.weight))
        assert not block.style_attn.q.weight.is_meta
    for key, t in src.state_dict().items():  # every fusion weight came from the file
        assert torch.equal(state[key], t.to(torch.bfloat16).float()), key
    ref = torch.randn(1, 3, get_config("tiny").audio.dim)
    video = torch.randn(1, 5, get_config("tiny").video.dim)
    block = model.audio_model.blocks[0]
    assert torch.equal(block.style_attn(block.norm_style(ref), video), torch.zeros_like(ref))


def test_gldi_from_ovi_still_refuses_other_missing_tensors(tmp_path, src):
    path = rf.write_ovi(tmp_path / "model.safetensors", src)
    from safetensors.torch import load_file, save_file
    sd = load_file(path)
    sd.pop("audio_model.blocks.1.ffn.0.weight")
    save_file(sd, path)
    with pytest.raises(CheckpointError, match=r"missing from the file \(1\): audio_model.blocks.1.ffn.0.weight"):
        load_model(path, config="tiny")


def test_ovi_json_configs_beside_the_file(tmp_path, src):
    path = rf.write_ovi(tmp_path / "model.safetensors", src)
    tiny = get_config("tiny-global")
    for name, tower in (("video.json", tiny.video), ("audio.json", tiny.audio)):
        d = {"patch_size": list(tower.patch_size), "dim": tower.dim, "ffn_dim": tower.ffn_dim,
             "freq_dim": tower.freq_dim, "num_heads": tower.num_heads, "num_layers": tower.num_layers,
             "in_dim": tower.in_dim, "out_dim": tower.out_dim, "text_len": tower.text_len, "eps": 1e-6,
             "text_dim": tower.text_dim, "qk_norm": True, "cross_attn_norm": True, "window_size": [-1, -1]}
        if name == "audio.json":
            d["temporal_rope_scaling_factor"] = 0.25
        (tmp_path / name).write_text(json.dumps(d))
    found = families.detect(path)
    assert found.config_source == "Ovi's video.json + audio.json beside it"
    assert found.config.audio.audio_rope_scale == 0.25 and found.config.interaction == "global"
    model = load_model(path)
    assert model.cfg.audio.audio_rope_scale == 0.25 and model.cfg.video.num_heads == tiny.video.num_heads


def test_unknown_and_unmatched_sizes(tmp_path):
    from safetensors.torch import save_file
    path = os.path.join(tmp_path, "other.safetensors")
    save_file({"encoder.weight": torch.zeros(2, 2)}, path)
    assert families.detect(path).family == "unknown"
    assert "unknown model family" in families.describe(path)
    odd = rf.random_model(get_config("tiny-global").replace(
        video=get_config("tiny-global").video.__class__(**{**get_config("tiny-global").video.to_dict(),
                                                           "ffn_dim": 256, "patch_size": (1, 2, 2)}),
    ))
    p2 = rf.write_ovi(tmp_path / "odd.safetensors", odd)
    found = families.detect(p2)
    assert found.config is None and "match no named config" in found.line()


# ------------------------------------------------------------------ issue 21: files larger than RAM, Wan2.1


def _wan21_14b_entries(fp8: bool, in_dim: int = 16, prefix: str = "") -> dict:
    """The header of Wan2.1-T2V-14B's DiT in its real layout and sizes (dim 5120, 40 layers, ffn 13824):
    bf16, or fp8 e4m3fn block Linear weights (ComfyUI's wan2.1_t2v_14B_fp8_e4m3fn)."""
    D, F, L, T = 5120, 13824, 40, 4096
    shapes = {"patch_embedding.weight": ((D, in_dim, 1, 2, 2), "BF16"), "patch_embedding.bias": ((D,), "BF16"),
              "text_embedding.0.weight": ((D, T), "BF16"), "text_embedding.0.bias": ((D,), "BF16"),
              "text_embedding.2.weight": ((D, D), "BF16"), "text_embedding.2.bias": ((D,), "BF16"),
              "time_embedding.0.weight": ((D, 256), "BF16"), "time_embedding.0.bias": ((D,), "BF16"),
              "time_embedding.2.weight": ((D, D), "BF16"), "time_embedding.2.bias": ((D,), "BF16"),
              "time_projection.1.weight": ((6 * D, D), "BF16"), "time_projection.1.bias": ((6 * D,), "BF16"),
              "head.head.weight": ((64, D), "BF16"), "head.head.bias": ((64,), "BF16"),
              "head.modulation": ((1, 2, D), "F32")}
    lin = "F8_E4M3" if fp8 else "BF16"
    for i in range(L):
        p = f"blocks.{i}."
        shapes[p + "modulation"] = ((1, 6, D), "F32")
        for att in ("self_attn", "cross_attn"):
            for n in "qkvo":
                shapes[f"{p}{att}.{n}.weight"] = ((D, D), lin)
                shapes[f"{p}{att}.{n}.bias"] = ((D,), "BF16")
            shapes[f"{p}{att}.norm_q.weight"] = ((D,), "BF16")
            shapes[f"{p}{att}.norm_k.weight"] = ((D,), "BF16")
        shapes[p + "norm3.weight"], shapes[p + "norm3.bias"] = ((D,), "BF16"), ((D,), "BF16")
        shapes[p + "ffn.0.weight"], shapes[p + "ffn.0.bias"] = ((F, D), lin), ((F,), "BF16")
        shapes[p + "ffn.2.weight"], shapes[p + "ffn.2.bias"] = ((D, F), lin), ((D,), "BF16")
    size = {"BF16": 2, "F32": 4, "F8_E4M3": 1}
    entries, at = {}, 0
    for name, (shape, dt) in shapes.items():
        n = size[dt]
        for s in shape:
            n *= s
        entries[prefix + name] = {"dtype": dt, "shape": list(shape), "data_offsets": [at, at + n]}
        at += n
    return entries


def _sparse_safetensors(path, entries) -> int:
    """The header written for real, the tensor bytes as a hole (a sparse file: no disk, no RAM)."""
    import struct

    text = json.dumps(dict(entries, __metadata__={"format": "pt"})).encode()
    end = max(e["data_offsets"][1] for e in entries.values())
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
    os.truncate(path, 8 + len(text) + end)
    return 8 + len(text) + end


def test_file_larger_than_ram_is_identified_without_mapping(tmp_path, monkeypatch):
    """A 28.6 GB Wan2.1-T2V-14B bf16 file (sparse) on this machine (~23 GB RAM): named from its header,
    Wan2.1 with its size, never mapped; as the model it is refused with that name, before any weight."""
    import mmap

    import safetensors

    from harmony.checkpoint import read_config

    def refuse(*a, **k):
        raise AssertionError("the file was mapped")

    monkeypatch.setattr(safetensors, "safe_open", refuse)
    monkeypatch.setattr(mmap, "mmap", refuse)
    path = tmp_path / "wan2.1_t2v_14B_bf16.safetensors"
    size = _sparse_safetensors(path, _wan21_14b_entries(fp8=False))
    assert size > 28.5e9 and os.stat(path).st_blocks * 512 < 10**7  # 28.6 GB long, a few MB on disk
    found = families.detect(path)
    assert found.family == "wan2.2-ti2v-5b" and found.variant.startswith("Wan2.1-T2V-14B")  # the key layout id
    line = found.line()
    assert line.startswith("wan2.1_t2v_14B_bf16.safetensors: Wan2.1-T2V-14B") and "storage bf16" in line
    assert "14.29B params" in line and "Wan2.2-TI2V-5B" not in line
    with pytest.raises(CheckpointError, match=r"is a Wan2\.1-T2V-14B .* video-only checkpoint"):
        read_config(path)
    with pytest.raises(CheckpointError, match=r"is a Wan2\.1-T2V-14B .* video-only checkpoint"):
        load_model(path)


def test_fp8_wan21_is_named_wan21(tmp_path):
    path = tmp_path / "wan2.1_t2v_14B_fp8_e4m3fn.safetensors"
    _sparse_safetensors(path, _wan21_14b_entries(fp8=True))
    line = families.describe(path)
    assert "Wan2.1-T2V-14B" in line and "fp8_e4m3fn" in line and "Wan2.2" not in line.split("(or")[0]
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "is a Wan2.1-T2V-14B" in str(e.value) and "a Wan2.2 video-only" not in str(e.value)
    i2v = tmp_path / "wan2.2_i2v_high_noise_14B.safetensors"
    _sparse_safetensors(i2v, _wan21_14b_entries(fp8=False, in_dim=36))
    assert "Wan2.2-I2V-A14B expert DiT alone" in families.describe(i2v)  # no CLIP image projection: not 2.1
