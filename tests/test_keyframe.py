"""First-frame detail (harmony.codecs.keyframe): the given image's lost detail comes back where the
frames still show it, and nowhere else. Hand-made pictures; then the pipeline and the decoder node."""
import pytest
import torch
import torch.nn.functional as F

from harmony.codecs.keyframe import DETAIL_DROP, DETAIL_KEEP, first_frame_detail, first_frame_gate


def blur(x):
    """A stand-in codec round trip: 5x5 box blur of [..., H, W, 3]."""
    y = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
    y = F.avg_pool2d(y, 5, 1, 2, count_include_pad=False)
    return y.permute(0, 2, 3, 1).reshape(x.shape)


def picture(left: int) -> torch.Tensor:
    """White 32x32 with a red 8x8 square whose left edge is at column ``left``, and a thin black line."""
    img = torch.ones(32, 32, 3)
    img[4:12, left:left + 8] = torch.tensor([1.0, 0.0, 0.0])
    img[24, :, :] = 0.0
    return img


def test_a_kept_picture_comes_back_exactly():
    img = picture(2)
    rt = blur(img)
    frames = rt.expand(5, -1, -1, -1).clone()  # the model kept the picture's latent: every frame decodes to rt
    out = first_frame_detail(frames, img, rt)
    assert torch.allclose(out, img.expand(5, -1, -1, -1), atol=1e-6)
    assert (frames - img).abs().max() > 0.3  # the plain decode had lost it


def test_a_small_drift_keeps_the_detail_and_the_drift():
    img = picture(2) * 0.8
    rt = blur(img)
    frames = (rt + 0.05).expand(3, -1, -1, -1)  # the model brightened the picture by 0.05 < DETAIL_KEEP
    out = first_frame_detail(frames, img, rt)
    assert torch.allclose(out, (img + 0.05).clamp(0, 1).expand(3, -1, -1, -1), atol=1e-6)


def test_where_an_object_moved_away_no_ghost_is_painted():
    img, moved = picture(2), picture(20)
    rt, frame = blur(img), blur(moved)[None]
    out = first_frame_detail(frame, img, rt)[0]
    # where the square was, its rim included, the frame shows white: left as decoded (no sharp red rim)
    assert torch.allclose(out[2:14, 0:12], frame[0, 2:14, 0:12], atol=1e-6)
    assert ((frame[0] + img - rt).clamp(0, 1) - frame[0])[2:14, 0:12].abs().max() > 0.5  # what no gate paints
    # where the square now is: the new content, not the picture's white
    assert torch.allclose(out[6:10, 22:26], frame[0, 6:10, 22:26], atol=1e-6)
    # the line that did not move gets its sharp edge back, far from the squares
    assert torch.allclose(out[22:27, 12:16], img[22:27, 12:16], atol=1e-6)


def test_the_gate_is_linear_between_keep_and_drop():
    rt = torch.zeros(8, 8, 3)
    for d, want in ((0.0, 1.0), (DETAIL_KEEP, 1.0), ((DETAIL_KEEP + DETAIL_DROP) / 2, 0.5), (DETAIL_DROP, 0.0),
                    (0.9, 0.0)):
        g = first_frame_gate(torch.full((1, 8, 8, 3), d), rt)
        assert torch.allclose(g, torch.full((1, 8, 8, 1), want), atol=1e-6), d
    # the difference is averaged over the 5x5 window: one changed pixel alone does not close it
    f = torch.zeros(1, 8, 8, 3)
    f[0, 4, 4] = 1.0
    g = first_frame_gate(f, rt)
    assert g[0, 4, 4, 0] == 1.0  # 1/25 = 0.04 < DETAIL_KEEP


def test_wrong_shapes_are_refused_with_the_input_named():
    with pytest.raises(ValueError, match="frames must be"):
        first_frame_detail(torch.zeros(4, 4, 3), torch.zeros(4, 4, 3), torch.zeros(4, 4, 3))
    with pytest.raises(ValueError, match="image is"):
        first_frame_detail(torch.zeros(2, 4, 4, 3), torch.zeros(8, 8, 3), torch.zeros(4, 4, 3))
    with pytest.raises(ValueError, match="keep < drop"):
        first_frame_gate(torch.zeros(2, 4, 4, 3), torch.zeros(4, 4, 3), keep=0.5, drop=0.4)


# ------------------------------------------------------------------ the pipeline and the node

@pytest.fixture(scope="module")
def pipe():
    from harmony.pipeline import HarmonyPipeline
    return HarmonyPipeline.from_pretrained(log=lambda m: None)


@pytest.fixture(scope="module")
def i2av(pipe):
    image = torch.rand(96, 64, 3, generator=torch.Generator().manual_seed(0))  # another size: cropped to 64x64
    return image, pipe.sample(pipe.encode_text("", "", ""), seconds=1.0, seed=0, steps=2, first_frame=image)


def test_an_i2av_latent_carries_its_fitted_image_and_decodes_to_it_on_frame_0(pipe, i2av):
    image, lat = i2av
    assert lat.first_frame.shape == (64, 64, 3)
    assert torch.allclose(lat.first_frame, pipe.conform_frames(image[None], None, max_frames=1)[0])
    frames, *_ = pipe.decode(lat)
    plain, *_ = pipe.decode(lat, keep_given=False)
    # a random image is far from anything the codec keeps: frame 0 is the image only with the detail
    assert (frames[0] - lat.first_frame).abs().max() < 1e-5
    assert (plain[0] - lat.first_frame).abs().mean() > 0.1
    assert torch.equal(plain, pipe.codecs.video.decode(lat.video)[0].clamp(0, 1))


def test_a_t2av_latent_decodes_as_before(pipe):
    lat = pipe.sample(pipe.encode_text("a red ball", "", ""), seconds=1.0, seed=0, steps=2)
    assert lat.first_frame is None
    frames, *_ = pipe.decode(lat)
    assert torch.equal(frames, pipe.codecs.video.decode(lat.video)[0].clamp(0, 1))


def test_the_decoder_node_switch(pipe, i2av):
    from nodes.decoder import HarmonyDecode

    _, lat = i2av
    on = HarmonyDecode().decode(pipe, lat)[0]
    off = HarmonyDecode().decode(pipe, lat, keep_given=False)[0]
    assert (on[0] - lat.first_frame).abs().max() < 1e-5 and not torch.allclose(on, off)
    assert HarmonyDecode.INPUT_TYPES()["optional"]["keep_given"][1]["default"] is True


def test_driving_media_come_back_as_given(pipe):
    """V2A's frames are the driving video and A2V's sound the driving audio, at the model's size and rate
    (exactly what was encoded); the plain decode is the codecs' round trip of them."""
    cond = pipe.encode_text("", "", "")
    g = torch.Generator().manual_seed(1)
    video = torch.rand(30, 48, 80, 3, generator=g)  # 2.5 s at 12 fps, another shape
    lat = pipe.sample(cond, seed=0, steps=2, driving_video=(video, 12.0), fit="letterbox")
    assert lat.driving_video[1:] == (12.0, "letterbox")
    frames, *_ = pipe.decode(lat)
    want = pipe.conform_clip(video, 12.0, frames.shape[0], fit="letterbox")
    assert torch.equal(frames, want)
    assert torch.equal(pipe.encode_video(video, 12.0, frames.shape[0], fit="letterbox"), lat.video)
    plain, *_ = pipe.decode(lat, keep_given=False)
    assert (plain - want).abs().mean() > 0.05  # random pixels do not survive the tiny codec

    wave = torch.randn(2, 33075, generator=g) * 0.1  # 1.5 s stereo at 22.05 kHz
    lat = pipe.sample(cond, seed=0, steps=2, driving_audio=(wave, 22050))
    _, got, sr, _ = pipe.decode(lat)
    want = pipe.conform_audio(wave, 22050, seconds=lat.seconds)[None]
    assert sr == pipe.sample_rate and got.shape == want.shape == (1, 24000) and torch.equal(got, want)
    _, plain, _, _ = pipe.decode(lat, keep_given=False)
    assert not torch.allclose(plain, want, atol=1e-2)
