"""``train --init-from <Ovi file> --config 5b`` (issue 11, item 6): the trainer's model starts
from an Ovi fusion file, the GLDI style-alignment modules at their identity init.

The files are reduced Ovi-layout files (``tests/realfiles.py``): Ovi's key names, prefix,
dtypes and ``video.json`` / ``audio.json``, with the 5B towers cut to ``SMALL`` sizes."""
import os

import pytest
import torch

import realfiles as rf
from harmony.checkpoint import CheckpointError
from harmony.conditioner import Conditioner
from harmony.config import apply_overrides, get_config
from harmony.model import HarmonyModel
from harmony.train import LatentPool, encode_latent_pool, init_from_file

SMALL = "dim=64,ffn_dim=128,num_heads=2,num_layers=2,text_dim=64"


def small(name, extra=""):
    return apply_overrides(get_config(name), ",".join(x for x in (SMALL, extra) if x))


@pytest.fixture(scope="module")
def src():
    """The Ovi model the files are cut from (5b-global layout, reduced)."""
    return rf.random_model(small("5b-global"), seed=3)


def trainer_model(cfg):
    torch.manual_seed(0)  # as train() builds it
    return HarmonyModel(cfg), Conditioner(cfg)


def test_ovi_file_feeds_every_fusion_weight_and_lists_fresh_style_modules(tmp_path, src, capsys):
    path = rf.write_ovi(tmp_path / "model.safetensors", src)
    rf.write_ovi_configs(tmp_path, src.cfg)
    cfg = small("5b")
    assert cfg.interaction == "gldi" and cfg.video.in_dim == 48 and cfg.audio.in_dim == 20
    model, cond = trainer_model(cfg)
    cond_before = {k: v.clone() for k, v in cond.state_dict().items()}
    out = init_from_file(str(path), model, cond, cfg)

    # what must be fresh: the keys a GLDI model has and Ovi's global model has not
    want_fresh = set(HarmonyModel(small("5b")).state_dict()) - set(HarmonyModel(small("5b-global")).state_dict())
    assert want_fresh and all(".norm_style." in k or ".style_attn." in k for k in want_fresh)
    printed = capsys.readouterr().out
    assert "Ovi fusion model" in printed and "from Ovi's video.json + audio.json beside it" in printed
    assert f"initialised fresh ({len(want_fresh)} tensors, GLDI style alignment at its identity init)" in printed
    assert f"loaded {len(src.state_dict())} tensors" in printed
    assert out.meta["init_family"] == "ovi" and out.meta["init_fresh_tensors"] == len(want_fresh)
    assert out.meta["init_step"] == 0 and out.meta["init_from"] == "model.safetensors"

    state = model.state_dict()
    for key, t in src.state_dict().items():  # every fusion tensor is the file's (stored bf16)
        assert torch.equal(state[key], t.to(torch.bfloat16).float()), key
    for block in model.audio_model.blocks:  # identity init: the style branch adds exactly zero
        ref, video = torch.randn(1, 3, cfg.audio.dim), torch.randn(1, 5, cfg.video.dim)
        assert torch.equal(block.style_attn(block.norm_style(ref), video), torch.zeros_like(ref))
    for k, v in cond.state_dict().items():  # an Ovi file has no text encoder for the trainer's conditioner
        assert torch.equal(v, cond_before[k]), k


def test_comfyui_prefixed_fp8_ovi_file_without_json(tmp_path, src, capsys):
    path = rf.write_ovi(tmp_path / "ovi_fp8.safetensors", src, prefix=rf.COMFY_PREFIX, fp8="scaled_e4m3fn")
    cfg = small("5b")
    model, cond = trainer_model(cfg)
    init_from_file(str(path), model, cond, cfg)
    printed = capsys.readouterr().out
    assert "model.diffusion_model." in printed and "scaled fp8_e4m3fn" in printed
    assert "num_heads and eps were taken from --config" in printed  # nothing beside the file says them
    state = model.state_dict()
    for key, t in src.state_dict().items():
        ref = t.float()
        if ref.dim() >= 2 and "blocks" in key and key.endswith(".weight"):  # scaled e4m3: 3 mantissa bits
            assert (state[key] - ref).abs().max() <= 2 ** -4 * ref.abs().max() + 1e-6, key
        else:
            assert torch.equal(state[key], ref.to(torch.bfloat16).float()), key


def test_global_config_from_ovi_has_nothing_fresh(tmp_path, src, capsys):
    path = rf.write_ovi(tmp_path / "model.safetensors", src)
    cfg = small("5b-global")
    model, cond = trainer_model(cfg)
    out = init_from_file(str(path), model, cond, cfg)
    assert "nothing initialised fresh" in capsys.readouterr().out
    assert out.meta["init_fresh_tensors"] == 0
    assert all(torch.equal(model.state_dict()[k], t.to(torch.bfloat16).float()) for k, t in src.state_dict().items())


def test_umt5_width_text_path_is_said_to_be_a_stand_in(tmp_path, capsys):
    big_text = apply_overrides(get_config("5b-global"), "dim=64,ffn_dim=128,num_heads=2,num_layers=1")
    assert big_text.video.text_dim == 4096
    path = rf.write_ovi(tmp_path / "model.safetensors", rf.random_model(big_text, seed=4))
    cfg = big_text.replace(interaction="gldi", audio_rope="aligned")
    torch.manual_seed(0)
    init_from_file(str(path), HarmonyModel(cfg), None, cfg)  # the 4096-wide conditioner is not needed here
    printed = capsys.readouterr().out
    assert "text_dim 4096" in printed and "WARNING" in printed and "umT5-XXL" in printed


def test_refusals_name_the_problem(tmp_path, src):
    path = rf.write_ovi(tmp_path / "model.safetensors", src)
    rf.write_ovi_configs(tmp_path, src.cfg)
    heads = small("5b", "num_heads=4")  # same shapes, other heads: only the JSON beside the file can tell
    with pytest.raises(ValueError, match=r"video\.num_heads: file 2 vs --config 4"):
        init_from_file(str(path), *trainer_model(heads), heads)
    os.remove(tmp_path / "video.json")  # no config beside it: the shapes decide
    wide = small("5b", "dim=128,num_heads=4")
    with pytest.raises(CheckpointError, match="wrong shape"):
        init_from_file(str(path), *trainer_model(wide), wide)
    wan = rf.write_wan22(tmp_path / "wan.safetensors", src)
    with pytest.raises(ValueError, match="video tower only"):
        init_from_file(str(wan), *trainer_model(small("5b")), small("5b"))
    with pytest.raises(FileNotFoundError, match="Ovi fusion file"):
        init_from_file(str(tmp_path / "missing.safetensors"), *trainer_model(small("5b")), small("5b"))


def test_encode_latent_pool_cuts_clips_to_the_wan_vae_frame_rule(tmp_path):
    from harmony import world
    from harmony.codecs import load_codecs
    from harmony.codecs.wan_vae import WanVAE

    torch.manual_seed(2)
    wan = WanVAE(dim=6, dec_dim=8, z_dim=48).eval()
    path = str(tmp_path / "pool.safetensors")
    encode_latent_pool(path, wan, load_codecs()[1], size=2, seconds=1.0)
    pool = LatentPool.load(path, (None, None), seed=0)
    frames = int(round(1.0 * world.FPS))  # 16 world frames -> 13 (4k+1) -> 1 + 12/4 latent frames
    size = world.sample_batch([0], 1.0).frames.shape[2]
    assert tuple(pool.data["video"].shape) == (2, 48, 1 + (frames - 1) // 4, size // 16, size // 16)
    assert pool.data["audio"].shape[0] == 2 and pool.data["audio"].shape[2] == 20
    assert torch.isfinite(pool.data["video"]).all()
