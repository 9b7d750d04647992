"""harmony.probe.partner_gains on hand-made models whose use of the partner is known."""
import types

import pytest
import torch

from harmony.probe import partner_gains


class Ignores(torch.nn.Module):
    """x0 model that returns its own noisy input: it never reads the partner."""
    cfg = types.SimpleNamespace(prediction="x0")

    def forward(self, zv, za, tv, ta, cond):
        return zv * 0.5, za * 0.5


class AudioReadsVideo(Ignores):
    """Audio x0 = the video's per-frame mean (channels, height, width) resampled to the audio
    length; the data below make that exact, so with the clip's own clean video the audio
    error is zero-ish and with another clip's video it is not. Video ignores audio."""

    def forward(self, zv, za, tv, ta, cond):
        per_frame = zv.mean(dim=(1, 3, 4))  # [B, F]
        a = torch.nn.functional.interpolate(per_frame[:, None], size=za.shape[1], mode="nearest")[:, 0]
        return zv * 0.5, a[:, :, None].expand_as(za) + 0.01 * za


def _data():
    g = torch.Generator().manual_seed(0)
    v0 = torch.randn(4, 3, 8, 2, 2, generator=g)
    per_frame = v0.mean(dim=(1, 3, 4))
    a0 = torch.nn.functional.interpolate(per_frame[:, None], size=16, mode="nearest")[:, 0][:, :, None].expand(4, 16, 5)
    return v0, a0.contiguous(), torch.tensor([1, 0, 3, 2])


def test_a_model_that_ignores_its_partner_has_gain_one():
    v0, a0, other = _data()
    g = partner_gains(Ignores(), v0, a0, None, other)
    for setting in ("joint", "V2A", "A2V"):
        assert g[setting]["mean"] == pytest.approx(1.0, abs=1e-6)


def test_a_model_that_reads_the_video_has_a_v2a_gain_and_no_a2v_gain():
    v0, a0, other = _data()
    g = partner_gains(AudioReadsVideo(), v0, a0, None, other)
    assert g["V2A"]["mean"] > 50  # own clean video gives the audio almost exactly
    assert g["A2V"]["mean"] == pytest.approx(1.0, abs=1e-6)  # the video never reads the audio
    assert g["joint"][0.9] < g["joint"][0.3]  # at high noise the partner carries less


def test_other_must_pair_each_clip_with_another():
    v0, a0, _ = _data()
    with pytest.raises(ValueError, match="different clip"):
        partner_gains(Ignores(), v0, a0, None, torch.tensor([0, 2, 1, 3]))


class VideoKeepsFirstFrame(Ignores):
    """Video x0 = latent frame 0 repeated over every frame (an I2AV model that copies the given
    first frame), audio ignores the video."""

    def forward(self, zv, za, tv, ta, cond):
        return zv[:, :, :1].expand_as(zv) + 0.01 * zv, za * 0.5


def test_i2av_gain_scores_frames_after_a_swapped_first_frame():
    v0, a0, other = _data()
    static = v0[:, :, :1].expand_as(v0).contiguous()  # clips whose frames all equal frame 0
    g = partner_gains(VideoKeepsFirstFrame(), static, a0, None, other)
    assert g["I2AV"]["mean"] > 50  # own frame 0 predicts frames 1..N exactly; another clip's does not
    g = partner_gains(Ignores(), v0, a0, None, other)
    assert g["I2AV"]["mean"] == pytest.approx(1.0, abs=1e-6)  # a model that ignores frame 0


def test_heldout_clips_of_one_split_pair_within_it():
    from harmony.probe import heldout_clips

    clips, other = heldout_clips(2, 1.0, splits="ambient")
    assert len(clips) == 2 and other.tolist() == [1, 0]
    with pytest.raises(ValueError, match="unknown splits"):
        heldout_clips(2, 1.0, splits="nature")


def test_own_mse_is_the_quality_beside_the_gain():
    v0, a0, other = _data()
    own = {}
    partner_gains(AudioReadsVideo(), v0, a0, None, other, own_mse=own)
    assert set(own) >= {"joint", "V2A", "A2V"} and own["V2A"][0.6] < 1e-3  # the true video gives the audio
    own_ignores = {}
    partner_gains(Ignores(), v0, a0, None, other, own_mse=own_ignores)
    assert own_ignores["V2A"][0.6] > 100 * own["V2A"][0.6]  # halving the noisy audio is far off
