"""The FLOP count the bench reports (``harmony.flops.model_flops``), checked by hand on a tiny config."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harmony.flops import model_flops
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


# --- real shapes and the memory plan (--shape real) ------------------------------------------------

from harmony.bench import real_rows  # noqa: E402
from harmony.bench_memory import (GiB, FusedAttention, LiveBytes, device_weight_bytes, fits,  # noqa: E402
                                  model_weight_table, plan_rows, step_activation_bytes, umt5_encoder_params,
                                  weight_table)
from harmony.checkpoint import to_fp8_  # noqa: E402
from harmony.flops import real_tokens  # noqa: E402
from harmony.config import get_config  # noqa: E402


def test_real_tokens_follow_the_pipeline_rules():
    """5 s at 24 fps: round(120) -> 4*30+1 = 121 frames, 1 + 120/4 = 31 latent frames, 704/16 = 44,
    patch 2 -> 22; 31*22*22 = 15004; audio ceil(5 * 31.25) = ceil(156.25) = 157."""
    cfg = get_config("5b")
    t = real_tokens(cfg, 5.0, (704, 704))
    assert (t["frames"], t["latent"], t["grid"], t["video_tokens"], t["audio_tokens"]) == \
        (121, (31, 44, 44), (31, 22, 22), 15004, 157)
    # 0.25 s: round(6) = 6 -> 4*1+1 = 5 frames -> 2 latent frames; 2*22*22 = 968; ceil(7.8125) = 8
    t = real_tokens(cfg, 0.25, (704, 704))
    assert (t["frames"], t["latent"], t["video_tokens"], t["audio_tokens"]) == (5, (2, 44, 44), 968, 8)
    # 720x1280 is not a multiple of 32 in height: refused, naming the rule
    with pytest.raises(ValueError, match="multiples of 32"):
        real_tokens(cfg, 5.0, (720, 1280))
    with pytest.raises(ValueError, match="meta"):
        real_tokens(HarmonyConfig(video=V, audio=A, interaction="global"), 5.0, (64, 64))


def test_umt5_param_count_by_hand():
    """vocab 10, d_model 4, d_kv 2, heads 2, 1 layer, d_ff 6, 3 buckets: embedding 10*4 = 40; layer: norm 4 +
    q,k,v,o 4 * 4*4 = 64 + relative bias 3*2 = 6 + norm 4 + wi_0, wi_1, wo 3 * 4*6 = 72 -> 150; final norm 4."""
    assert umt5_encoder_params(vocab=10, d_model=4, d_kv=2, heads=2, layers=1, d_ff=6, buckets=3) == 194
    assert umt5_encoder_params(vocab=10, d_model=4, d_kv=2, heads=2, layers=3, d_ff=6, buckets=3) == 40 + 3 * 150 + 4


@pytest.mark.slow
def test_umt5_param_count_matches_transformers():
    transformers = pytest.importorskip("transformers")
    c = transformers.UMT5Config(vocab_size=32, d_model=8, d_kv=4, num_heads=3, num_layers=2, d_ff=12,
                                relative_attention_num_buckets=5, num_decoder_layers=0, feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        m = transformers.UMT5EncoderModel(c)
    n = sum(p.numel() for p in m.parameters())  # the shared embedding is counted once (tied)
    assert n == umt5_encoder_params(vocab=32, d_model=8, d_kv=4, heads=3, layers=2, d_ff=12, buckets=5)


def test_weight_table_by_hand():
    """Non-block: a 4x3 weight (2 B) and a 5-value modulation kept fp32 (4 B); layer 0: an fp8-able 8x4
    weight, an 8-value norm, an fp8-able 2x2 weight; layer 1: an fp8-able 8x4 weight and an 8-value norm.
    fp8: 1 B per quantised value + a 4 B scale each; the others keep their bytes."""
    entries = [("video_model.patch_embedding.weight", (4, 3), 2), ("video_model.time_projection.1.weight", (5,), 4),
               ("video_model.blocks.0.ffn.0.weight", (8, 4), 2), ("video_model.blocks.0.norm3.weight", (8,), 2),
               ("audio_model.blocks.0.ffn.2.weight", (2, 2), 2),
               ("video_model.blocks.1.ffn.0.weight", (8, 4), 2), ("video_model.blocks.1.norm3.weight", (8,), 2)]
    fp8 = ["video_model.blocks.0.ffn.0.weight", "audio_model.blocks.0.ffn.2.weight", "video_model.blocks.1.ffn.0.weight"]
    t = weight_table(entries, fp8)
    assert t["params"] == 12 + 5 + 32 + 8 + 4 + 32 + 8
    assert t["fixed"] == {"bf16": 24 + 20, "fp8": 24 + 20}
    assert t["layers"][0] == {"bf16": 2 * 44, "fp8": (32 + 4) + 2 * 8 + (4 + 4)}
    assert t["layers"][1] == {"bf16": 2 * 40, "fp8": (32 + 4) + 2 * 8}
    assert (t["bf16"], t["fp8"]) == (44 + 88 + 80, 44 + 60 + 52)


def test_block_swap_device_bytes_by_hand():
    """Four layers of 10, 20, 30, 40 B and 5 B outside the blocks."""
    table = {"fixed": {"fp8": 5}, "layers": {0: {"fp8": 10}, 1: {"fp8": 20}, 2: {"fp8": 30}, 3: {"fp8": 40}}}
    assert device_weight_bytes(table, "fp8") == 105
    assert device_weight_bytes(table, "fp8", 0) == 5 + 40 + 30          # two streamed layers at once (prefetch)
    assert device_weight_bytes(table, "fp8", 0, prefetch=False) == 5 + 40
    assert device_weight_bytes(table, "fp8", 2) == 5 + 10 + 20 + 40 + 30
    assert device_weight_bytes(table, "fp8", 3) == 5 + 60 + 40         # one layer left to stream
    assert device_weight_bytes(table, "fp8", 4) == 105
    with pytest.raises(ValueError, match="resident"):
        device_weight_bytes(table, "fp8", 5)


def test_weight_table_matches_real_storage():
    """The meta-device count equals the bytes of a real tiny model stored bf16, then quantised as the bench does."""
    cfg = HarmonyConfig(video=V, audio=A, interaction="gldi")
    t = model_weight_table(cfg)
    model = HarmonyModel(cfg).to(torch.bfloat16)
    stored = lambda m: sum(x.numel() * x.element_size() for x in m.state_dict().values())  # noqa: E731
    assert t["bf16"] == stored(model)
    to_fp8_(model)
    assert t["fp8"] == stored(model)
    assert set(t["layers"]) == {0}


def test_plan_rows_and_fit_rule_by_hand():
    rows = plan_rows({"opt": 10}, {"cfg": 5, "synccfg": 7}, text_bytes=20, vae_bytes=3, options=[("opt", "fp8")])
    assert rows == [("opt", "cfg", 10, 30, 15, 13, 30), ("opt", "synccfg", 10, 30, 17, 13, 30)]
    rows = plan_rows({"opt": 10}, {("cfg", "fp8"): 50, ("synccfg", "fp8"): 70}, 20, 3, [("opt", "fp8")])
    assert [r[-1] for r in rows] == [60, 80]
    assert fits(23 * GiB, 24) and not fits(23 * GiB + 1, 24)
    assert fits(24 * GiB, 24, reserve_gib=0)


def test_live_bytes_by_hand():
    """a (1000 fp32 = 4000 B) and b = 2a live together (8000 B); after a is gone c = b + 1 -> still 8000."""
    with LiveBytes() as track:
        a = torch.empty(1000, device="meta")
        b = a * 2
        del a
        c = b + 1
        del b, c
    assert track.peak == 8000 and track.now == 0


def test_fused_attention_counts_output_and_lse_only():
    """q, k, v [1, 2, 8, 4] bf16: output 64 values x 2 B = 128 B, log-sum-exp 16 x 4 B = 64 B; the math
    fallback would also hold the 2 x 8 x 8 score matrix."""
    q = torch.empty(1, 2, 8, 4, device="meta", dtype=torch.bfloat16)
    with FusedAttention(), LiveBytes() as fused:
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert out.shape == (1, 2, 8, 4) and fused.peak == 128 + 64
    with LiveBytes() as math_path:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert math_path.peak > fused.peak


def test_step_activations_hold_the_ffn_hidden():
    """A step holds at least one FFN hidden for the whole batch: B x video tokens x ffn_dim x 2 B."""
    cfg = HarmonyConfig(video=V, audio=A, interaction="gldi")
    tokens = {"latent": (2, 4, 4), "audio_tokens": 5}
    lv = 2 * 2 * 2
    cfg_b, sync_b = (step_activation_bytes(cfg, tokens, m) for m in ("cfg", "synccfg"))
    assert cfg_b >= 2 * lv * V.ffn_dim * 2 and sync_b >= 3 * lv * V.ffn_dim * 2
    assert sync_b > cfg_b
    assert step_activation_bytes(cfg, tokens, "cfg", "fp8") >= cfg_b


def test_real_rows_run_batches_2_and_3():
    """The rows' mechanics on a tiny config (no timing asserted): plain CFG is one forward of batch 2,
    SyncCFG one of batch 3, the FLOP column is model_flops of that batch, block swap runs and is removed."""
    cfg = HarmonyConfig(video=V, audio=A, interaction="gldi")
    tokens = {"latent": (2, 4, 4), "grid": (2, 2, 2), "audio_tokens": 5}
    out, said = [], []
    real_rows(torch.device("cpu"), cfg, tokens, ["bf16-cfg", "bf16-sync", "fp8-cfg", "swap-sync"], repeats=1,
              warmup=0, resident=0, n_ref=0, out=out, log=said.append)
    assert [r[2] for r in out] == [2, 3, 2, 3]
    assert [r[5] for r in out] == [model_flops(cfg, (2, 2, 2), 5, batch=b)["step"] / 1e9 for b in (2, 3, 2, 3)]
    assert out[3][1].startswith("fp8 + block swap 0 res.")
    assert any("block swap: 1 of 1 layers streamed" in s for s in said)
