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
    with pytest.raises(CheckpointError, match="Wan2.2 video-only"):
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
