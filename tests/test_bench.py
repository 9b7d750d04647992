"""The FLOP count the bench reports (``harmony.bench.model_flops``), checked by hand on a tiny config."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harmony.bench import model_flops
from harmony.config import HarmonyConfig, TowerConfig
from harmony.model import Conditioning, HarmonyModel

V = TowerConfig(modality="video", dim=8, ffn_dim=16, num_heads=2, num_layers=1, in_dim=4, out_dim=4,
                text_dim=6, text_len=3, freq_dim=4, patch_size=(1, 2, 2))
A = TowerConfig(modality="audio", dim=8, ffn_dim=16, num_heads=2, num_layers=1, in_dim=2, out_dim=2,
                text_dim=6, text_len=5, freq_dim=4, patch_size=(1,), audio_patch_kernel=3, audio_patch_hidden=4)


def test_flops_by_hand():
    """Grid (1, 1, 2) -> 2 video tokens, 3 audio tokens, global fusion; mm(m, k, n) = 2 m k n.

    conditioning: video text 2*3*6*8 + 2*3*8*8 = 672, audio text 2*5*6*8 + 2*5*8*8 = 1120 -> 1792
    patch: video 2*2*16*8 = 512; audio Conv1d 2*3*6*8 = 288 + ConvMLP 3 * 2*3*24*4 = 1728 -> 2528
    time (one group per tower): 2 * (2*4*8 + 2*8*8 + 2*8*48) = 1920
    video layer (L=2): self 768 + 128 + 256, text 256 + 768 + 192 + 256, partner 768 + 192, ffn 1024 -> 4608
    audio layer (L=3): self 1152 + 288 + 384, text 384 + 1280 + 480 + 384, partner 512 + 192, ffn 1536 -> 6592
    heads: 2*2*8*16 + 2*3*8*2 = 608
    step = 2528 + 1920 + 4608 + 6592 + 608 = 16256; attention (4 lq lk D): 128+192+192+288+480+192 = 1472
    """
    cfg = HarmonyConfig(video=V, audio=A, interaction="global")
    f = model_flops(cfg, (1, 1, 2), 3)
    assert f == {"conditioning": 1792, "step": 16256, "total": 18048, "attention": 1472}
    assert model_flops(cfg, (1, 1, 2), 3, batch=4)["total"] == 4 * 18048


@pytest.mark.parametrize("interaction, n_ref", [("global", 0), ("gldi", 0), ("gldi", 4)])
def test_flops_match_torch_flop_counter(interaction, n_ref):
    """torch's FlopCounterMode on a real forward counts the same matmuls (attention too, where it counts sdpa)."""
    cfg = HarmonyConfig(video=V, audio=A, interaction=interaction)
    model = HarmonyModel(cfg).eval()
    f = model_flops(cfg, (1, 1, 2), 3, n_ref=n_ref)
    cond = Conditioning(torch.randn(1, 3, 6), torch.randn(1, 5, 6), torch.randn(1, n_ref, 2) if n_ref else None)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 4, 1, 2, 4), torch.randn(1, 3, 2), torch.tensor([5.0]), torch.tensor([5.0]), cond)
    assert counter.get_total_flops() in (f["total"], f["total"] - f["attention"])
