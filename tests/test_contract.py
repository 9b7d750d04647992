"""The codec contract (harmony.codecs.contract): every video / audio codec shape keeps it, with the
values of its codec, and the clip geometry, the model meta and the size rule read it."""
import types

import pytest
import torch

from harmony.codecs import contract
from harmony.codecs.contract import AudioCodec, VideoCodec

# the Wan2.2 VAE (Wan2.2-TI2V-5B, Ovi) and MMAudio's 16 kHz codec, as their papers and code give them
WAN = {"fps": 24, "temporal_stride": 4, "spatial_stride": 16, "latent_channels": 48}
MMAUDIO = {"sample_rate": 16000, "hop_length": 512, "latent_rate": 31.25, "latent_channels": 20}
TOY_VIDEO = {"fps": 16, "temporal_stride": 1, "spatial_stride": 16, "latent_channels": 16}
TOY_AUDIO = {"sample_rate": 16000, "hop_length": 512, "latent_rate": 31.25, "latent_channels": 20}


def _video_shapes(tmp_path):
    """Every video-codec shape in the tree, built without real weights."""
    from safetensors.torch import save_file

    from harmony import lazy_codecs
    from harmony.codecs.toy_video import VideoCodec as ToyVideo
    from harmony.codecs.wan_vae import WanVAE

    torch.manual_seed(0)
    path = tmp_path / "wan2.2_vae.safetensors"
    save_file({k: v.contiguous() for k, v in WanVAE(dim=6, dec_dim=8, z_dim=48).state_dict().items()}, str(path))
    from nodes import core_inputs

    return {
        "toy VideoCodec": (ToyVideo(), TOY_VIDEO),
        "WanVAE": (WanVAE(dim=6, dec_dim=8, z_dim=48), WAN),
        "LazyWanVAE": (lazy_codecs.LazyWanVAE(path, log=lambda m: None), WAN),
        "CoreVideoCodec": (core_inputs.CoreVideoCodec(object(), 48), WAN),  # a core VAE behind it
        "UnboundVideoCodec": (core_inputs.UnboundVideoCodec(48), WAN),
    }


def _audio_shapes(tmp_path):
    from harmony import lazy_codecs
    from harmony.codecs.bigvgan import BigVGANVocoder
    from harmony.codecs.mmaudio import MMAudioCodec
    from harmony.codecs.mmaudio_vae import MMAudioVAE
    from harmony.codecs.toy_audio import AudioCodec as ToyAudio
    from nodes import core_inputs

    vae, voc = tmp_path / "v1-16.pth", tmp_path / "best_netG.pt"
    torch.save(MMAudioVAE(hidden_dim=8).state_dict(), vae)
    torch.save({"generator": BigVGANVocoder(upsample_initial_channel=64).state_dict()}, voc)
    return {
        "toy AudioCodec": (ToyAudio(), TOY_AUDIO),
        "MMAudioCodec": (MMAudioCodec(MMAudioVAE(hidden_dim=8)), MMAUDIO),
        "LazyMMAudioCodec": (lazy_codecs.LazyMMAudioCodec(vae, voc, log=lambda m: None), MMAUDIO),
        "UnboundAudioCodec": (core_inputs.UnboundAudioCodec(20), MMAUDIO),
    }


def test_every_video_codec_keeps_the_contract_with_its_values(tmp_path):
    shapes = _video_shapes(tmp_path)
    assert len(shapes) == 5  # the five video-codec shapes of the tree
    for name, (codec, want) in shapes.items():
        assert isinstance(codec, VideoCodec), name
        assert not isinstance(codec, AudioCodec), name
        assert {k: getattr(codec, k) for k in want} == want, name
        s = want["temporal_stride"]
        # the first-frame rule: F latent frames <-> 1 + s (F - 1) frames
        assert codec.frames_for_latents(31) == 1 + s * 30, name
        assert codec.latents_for_frames(1 + s * 30) == 31 and codec.latents_for_frames(1) == 1, name
        assert len(codec.frame_size) == 2 and all(x % codec.spatial_stride == 0 for x in codec.frame_size), name


def test_every_audio_codec_keeps_the_contract_with_its_values(tmp_path):
    shapes = _audio_shapes(tmp_path)
    for name, (codec, want) in shapes.items():
        assert isinstance(codec, AudioCodec), name
        assert not isinstance(codec, VideoCodec), name
        assert {k: getattr(codec, k) for k in want} == want, name
        # ceil(T / hop), at least one latent: 5 s -> 157 (Ovi's audio_latent_length)
        assert codec.num_latents(80000) == 157 and codec.num_latents(512) == 1 and codec.num_latents(513) == 2, name
        assert codec.num_latents(0) == 1, name


def test_something_without_the_geometry_is_not_a_codec():
    no_fps = types.SimpleNamespace(temporal_stride=4, spatial_stride=16, latent_channels=48, frame_size=(32, 32),
                                   latents_for_frames=len, frames_for_latents=len, encode=len, decode=len)
    assert not isinstance(no_fps, VideoCodec)
    assert isinstance(types.SimpleNamespace(fps=24, **vars(no_fps)), VideoCodec)


def test_wan_codecs_report_the_one_wan_geometry_and_the_5b_meta_records_it(tmp_path):
    from harmony.config import get_config

    g = contract.WAN22_VAE
    for name, (codec, want) in _video_shapes(tmp_path).items():
        if want is WAN:
            assert (codec.fps, codec.temporal_stride, codec.spatial_stride) == (g.fps, g.temporal_stride,
                                                                              g.spatial_stride), name
    for name in ("5b", "5b-global"):
        meta = get_config(name).meta
        assert (meta["video_fps"], meta["video_temporal_stride"], meta["video_spatial_stride"]) == (24, 4, 16)
        assert (meta["audio_sample_rate"], meta["audio_latent_rate"]) == (16000, 31.25)
        assert meta["max_seconds"] == 5.0  # Ovi is trained on 5 s clips


def test_clip_geometry_of_the_real_codec_classes_is_ovis_5_s_clip():
    from harmony.codecs.mmaudio import MMAudioCodec
    from harmony.codecs.wan_vae import WanVAE
    from harmony.jobs import clip_geometry

    g = clip_geometry(5.0, WanVAE.fps, (704, 704), WanVAE, MMAudioCodec)
    assert g.n_frames == 121 and g.video == (48, 31, 44, 44) and (g.n_audio, g.audio_channels) == (157, 20)


def test_size_multiple_is_the_codec_stride_times_the_patch():
    from harmony.codecs.toy_video import VideoCodec as ToyVideo

    assert contract.size_multiple(contract.WAN22_VAE, (1, 2, 2)) == 32
    assert contract.size_multiple(ToyVideo(), (1, 2, 2)) == 32
    assert contract.size_multiple(types.SimpleNamespace(spatial_stride=8), (1, 1, 1)) == 8


def test_meta_is_read_in_one_vocabulary_and_old_files_still_read():
    from harmony.codecs.toy_audio import AudioCodec as ToyAudio
    from harmony.codecs.toy_video import VideoCodec as ToyVideo

    new = contract.geometry_meta(ToyVideo(), ToyAudio())
    assert new == {"video_fps": 16, "video_temporal_stride": 1, "video_spatial_stride": 16,
                   "audio_sample_rate": 16000, "audio_latent_rate": 31.25}
    old = {"fps": 16, "sample_rate": 16000, "audio_latent_rate": 31.25}  # tiny models trained before
    for key in ("video_fps", "audio_sample_rate", "audio_latent_rate"):
        assert contract.meta_value(old, key) == contract.meta_value(new, key) == new[key]
    assert contract.meta_value({}, "video_fps") is None and contract.meta_value(None, "video_fps", 3) == 3
    # the new name wins when a file has both
    assert contract.meta_value({"fps": 16, "video_fps": 24}, "video_fps") == 24


@pytest.mark.slow
def test_importing_the_codecs_package_does_not_pull_in_toy_tooling():
    import subprocess
    import sys

    code = ("import sys, harmony.codecs, harmony.codecs.contract, harmony.config; "
            "print(sorted(m for m in sys.modules if m.startswith('harmony.codecs.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['harmony.codecs.contract']"
