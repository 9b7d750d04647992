"""harmony.jobs.clip_geometry: one rule for a clip's latent shapes and noise (pipeline, evaluation,
controls, ablation)."""
import types

import pytest
import torch

from harmony.jobs import clip_geometry

WAN_VAE = types.SimpleNamespace(temporal_stride=4, spatial_stride=16, latent_channels=48)
MMAUDIO = types.SimpleNamespace(latent_rate=16000 / 512, latent_channels=20)
TINY_VIDEO = types.SimpleNamespace(temporal_stride=1, spatial_stride=16, latent_channels=16)


def test_wan22_geometry_5s_is_121_frames_31_latent_frames_157_audio_latents():
    g = clip_geometry(5.0, 24, (704, 704), WAN_VAE, MMAUDIO)
    assert g.n_frames == 121 and g.video == (48, 31, 44, 44) and g.n_audio == 157
    # any length: 4k + 1 frames, never more than round(seconds * fps) + 1
    for seconds in (1.0, 2.5, 3.3, 6.0):
        g = clip_geometry(seconds, 24, (704, 704), WAN_VAE, MMAUDIO)
        assert (g.n_frames - 1) % 4 == 0 and g.video[1] == 1 + (g.n_frames - 1) // 4
        assert abs(g.n_frames - seconds * 24) <= 4


def test_tiny_geometry_has_one_latent_frame_per_frame():
    g = clip_geometry(3.0, 16, (64, 64), TINY_VIDEO, MMAUDIO)
    assert g.n_frames == 48 and g.video == (16, 48, 4, 4) and g.n_audio == 94


def test_noise_is_video_first_from_the_seed():
    g = clip_geometry(1.0, 16, (32, 32), TINY_VIDEO, MMAUDIO)
    nv, na = g.noise(3)
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(nv, torch.randn(1, 16, 16, 2, 2, generator=gen))
    assert torch.equal(na, torch.randn(1, 32, 20, generator=gen))
    assert not torch.equal(g.noise(4)[0], nv)


@pytest.mark.parametrize("seconds", [5.0, 2.0])
def test_evaluation_and_pipeline_draw_the_same_clip(seconds, monkeypatch):
    """generate_batch (evaluate, controls, ablate) sizes and seeds a Wan-geometry clip as
    pipe.sample does: the 4k+1 rule and the same noise."""
    from harmony import batch_generate, pipeline

    seen = []

    def fake_sample(model, cond, noise_v, noise_a, **kw):
        seen.append((noise_v.clone(), noise_a.clone()))
        raise StopIteration

    monkeypatch.setattr("harmony.sampling.sample", fake_sample)
    monkeypatch.setattr(pipeline, "sample", fake_sample)
    pipe = pipeline.HarmonyPipeline.from_pretrained(None)
    pipe.codecs.video.temporal_stride = 4  # the tiny codec, given the Wan VAE's temporal rule
    try:
        with pytest.raises(StopIteration):
            pipe.sample(pipe.encode_text("a", "", ""), seconds=seconds, seed=5, steps=2)
        with pytest.raises(StopIteration):
            batch_generate.generate_batch(pipe, "T2AV", [("a", "", "")], [5], seconds=seconds, steps=2)
    finally:
        del pipe.codecs.video.temporal_stride
    (v1, a1), (v2, a2) = seen
    assert torch.equal(v1, v2) and torch.equal(a1, a2)
    want = clip_geometry(seconds, pipe.fps, pipe.frame_size, types.SimpleNamespace(
        temporal_stride=4, spatial_stride=16, latent_channels=16), pipe.codecs.audio)
    assert v1.shape[2] == want.video[1] == 1 + (want.n_frames - 1) // 4
