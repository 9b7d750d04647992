"""HarmonyPipeline with the bundled model: the four jobs, determinism, input handling, errors."""
import numpy as np
import pytest
import torch

from harmony.pipeline import AVLatent, HarmonyPipeline


@pytest.fixture(scope="module")
def pipe():
    return HarmonyPipeline.from_pretrained(log=lambda m: None)


@pytest.fixture(scope="module")
def cond(pipe):
    return pipe.encode_text("a small red ball bounces twice on the left. plain blue background.",
                            "two high thuds.")


def test_same_seed_same_clip_other_seed_other_clip(pipe, cond):
    a = pipe.sample(cond, seconds=1.0, seed=5, steps=3)
    b = pipe.sample(cond, seconds=1.0, seed=5, steps=3)
    c = pipe.sample(cond, seconds=1.0, seed=6, steps=3)
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
    assert not torch.equal(a.video, c.video)


def test_four_jobs_follow_the_given_inputs(pipe, cond):
    sr = 22050
    drive = torch.randn(2, int(1.5 * sr)) * 0.1  # stereo, another rate
    lat = pipe.sample(cond, seed=0, steps=2, driving_audio=(drive, sr))
    assert lat.job == "A2V" and lat.seconds == pytest.approx(1.5)
    # the generated latent keeps the driving audio exactly
    assert torch.allclose(lat.audio, pipe.encode_audio(drive, sr, seconds=1.5).float())
    frames = torch.rand(20, 48, 80, 3)  # 20 frames at 10 fps = 2 s, another size
    lat = pipe.sample(cond, seed=0, steps=2, driving_video=(frames, 10.0))
    assert lat.job == "V2A" and lat.seconds == pytest.approx(2.0) and lat.video.shape[2] == 32
    lat = pipe.sample(cond, seconds=1.0, seed=0, steps=2, first_frame=torch.rand(64, 64, 3))
    assert lat.job == "I2AV"
    lat = pipe.sample(cond, seconds=1.0, seed=0, steps=2,
                      ref_voice=(np.random.default_rng(0).normal(0, 0.1, 24000).astype(np.float32)[None], 16000))
    assert lat.job == "T2AV"
    frames, wave, rate, fps = pipe.decode(lat)
    assert frames.shape == (16, 64, 64, 3) and wave.shape == (1, 16000) and rate == 16000 and fps == 16


def test_long_requests_are_capped_and_short_media_refused(pipe, cond):
    messages = []
    pipe.log = messages.append
    try:
        assert pipe._plan_seconds(60.0, None, None) == pipe.max_seconds
        assert any("capped" in m for m in messages)
    finally:
        pipe.log = lambda m: None
    with pytest.raises(ValueError, match="driving audio is 0.50 s long"):
        pipe.sample(cond, steps=1, driving_audio=(torch.zeros(1, 8000), 16000))
    with pytest.raises(ValueError, match="seconds must be at least"):
        pipe.sample(cond, seconds=0.2, steps=1)


def test_bad_inputs_name_what_is_wrong(pipe, cond):
    with pytest.raises(TypeError, match="prompt must be a string"):
        pipe.encode_text(None)
    with pytest.raises(ValueError, match="first frame: expected frames"):
        pipe.sample(cond, seconds=1.0, steps=1, first_frame=torch.rand(64, 64))
    with pytest.raises(TypeError, match="AVLatent"):
        pipe.decode({"samples": torch.zeros(1)})
    with pytest.raises(ValueError, match="guidance mode"):
        pipe.sample(cond, seconds=1.0, steps=1, guidance="bogus")


def test_codec_mismatch_is_refused(tmp_path):
    from harmony.codecs import AudioCodec, VideoCodec, save_codecs

    other = tmp_path / "other_codecs.safetensors"
    save_codecs(VideoCodec(), AudioCodec(), str(other))
    with pytest.raises(ValueError, match="not the ones this model was trained with"):
        HarmonyPipeline.from_pretrained(codecs=str(other), log=lambda m: None)


def test_av_latent_carries_its_timing(pipe, cond):
    lat = pipe.sample(cond, seconds=1.25, seed=1, steps=2)
    assert isinstance(lat, AVLatent) and lat.fps == 16 and lat.sample_rate == 16000
    assert lat.video.shape[2] == 20 and lat.audio.shape[1] == 40  # ceil(1.25 * 31.25)


def test_a_job_without_settings_samples_at_the_model_files_settings_for_that_job(pipe, cond):
    """A model file may record tuned sampling settings per job (jobs.tuned_settings): a run that
    gives none gets its job's, bit for bit the same as giving them; a run that gives some gets those."""
    from harmony.batch_generate import generate_batch
    from harmony.guidance import default_scales

    meta = pipe.model.cfg.meta
    saved = meta.get("sampling")
    meta["sampling"] = {"sv": 2.5, "jobs": {"I2AV": {"sv": 1.5, "sa": 4.0, "shift": 2.0}}}
    try:
        image = np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3)
        run = dict(seconds=1.0, seed=2, steps=2)
        own = pipe.sample(cond, first_frame=image, **run)
        assert (own.info["sv"], own.info["sa"], own.info["shift"]) == (1.5, 4.0, 2.0)
        given = pipe.sample(cond, first_frame=image, sv=1.5, sa=4.0, shift=2.0, **run)
        assert torch.equal(own.video, given.video) and torch.equal(own.audio, given.audio)
        other = pipe.sample(cond, first_frame=image, sv=3.0, **run)
        assert other.info["sv"] == 3.0 and not torch.equal(own.video, other.video)
        other = pipe.sample(cond, first_frame=image, shift=5.0, **run)
        assert not torch.equal(own.video, other.video)
        t2av = pipe.sample(cond, **run)  # no entry of its own: the file's sv, the paper's sa
        assert (t2av.info["sv"], t2av.info["sa"]) == (2.5, 2.0) == default_scales(pipe.model.cfg, "T2AV")
        # the batched generator (evaluation, controls) reads the same scales
        texts = [("a face talks.", "a voice.", "")]
        a = generate_batch(pipe, "I2AV", texts, [2], first_frames=[image], steps=2, seconds=1.0)
        b = generate_batch(pipe, "I2AV", texts, [2], first_frames=[image], steps=2, seconds=1.0, sv=1.5, sa=4.0,
                           shift=2.0)
        c = generate_batch(pipe, "I2AV", texts, [2], first_frames=[image], steps=2, seconds=1.0, sv=3.0, sa=2.0)
        assert np.array_equal(a[0][0], b[0][0]) and not np.array_equal(a[0][0], c[0][0])
    finally:
        meta.pop("sampling", None)
        if saved is not None:
            meta["sampling"] = saved


def test_the_bundled_files_driven_jobs_sample_with_their_timing_anchor(pipe, cond):
    """The bundled file records st for A2V and V2A (the timing anchor, guidance.Guidance.st): an A2V run
    without settings is the run with the file's st, bit for bit; st = 0 (the paper's SyncCFG) differs."""
    from harmony.guidance import default_timing

    st = default_timing(pipe.model.cfg, "A2V")
    assert st > 0 and default_timing(pipe.model.cfg, "V2A") > 0 and default_timing(pipe.model.cfg, "T2AV") == 0
    drive = (torch.randn(1, 16000, generator=torch.Generator().manual_seed(3)) * 0.1, 16000)
    own = pipe.sample(cond, seed=4, steps=2, driving_audio=drive)
    assert own.info["st"] == st
    given = pipe.sample(cond, seed=4, steps=2, driving_audio=drive, st=st)
    off = pipe.sample(cond, seed=4, steps=2, driving_audio=drive, st=0.0)
    assert torch.equal(own.video, given.video) and not torch.equal(own.video, off.video)


def test_the_bundled_files_t2av_samples_with_its_resync_pass(pipe, cond):
    """The bundled file records T2AV's resync pass (sampling.sample; none for I2AV, whose image would not hold
    through it): a T2AV run without settings is the run with the file's share, bit for bit, keeps the joint
    run's sound and re-times only the picture; resync = 0 is the paper's sampling."""
    from harmony.sampling import default_resync

    r = default_resync(pipe.model.cfg, "T2AV")
    assert 0 < r <= 1 and default_resync(pipe.model.cfg, "I2AV") == 0
    own = pipe.sample(cond, seed=4, steps=5)
    given = pipe.sample(cond, seed=4, steps=5, resync=r)
    off = pipe.sample(cond, seed=4, steps=5, resync=0.0)
    assert own.info["resync"] == r and off.info["resync"] == 0.0
    assert torch.equal(own.video, given.video) and torch.equal(own.audio, off.audio)
    assert not torch.equal(own.video, off.video)
