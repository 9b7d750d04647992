"""The one pipeline builder (harmony/assemble.py): every entrance builds through it, the pairing
checks, and text CFG's negative prompts (Ovi's for an Ovi-family model, the empty text for the
tiny one, overridable)."""
import os

import pytest
import torch

import realfiles
from harmony import assemble
from harmony import pipeline as pipeline_module
from harmony.config import get_config
from harmony.umt5 import OVI_AUDIO_NEGATIVE, OVI_VIDEO_NEGATIVE
from harmony.umt5_conditioner import UMT5Conditioner


class TableEncoder:
    """A hand-made umT5 encoder: each text -> a row per character (its code point / 1000 in every
    column), so each embedding is known in closed form; records what it was asked to encode."""

    def __init__(self, dim):
        self.dim, self.calls = dim, []

    def encode(self, texts, device=None, text_len=None):
        self.calls.append(list(texts))
        return [torch.tensor([[ord(c) / 1000.0] * self.dim for c in t] or [[0.0] * self.dim]) for t in texts]


def expected(text, dim, text_len):
    rows = torch.zeros(text_len, dim)
    for i, c in enumerate(text[:text_len]):
        rows[i] = ord(c) / 1000.0
    return rows


@pytest.fixture(scope="module")
def ovi_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("ovi")
    cfg = realfiles.stack_config()  # tiny towers, the real codecs' channels, Ovi's meta (umT5 text)
    path = str(d / "ovi_tiny.safetensors")
    realfiles.write_ovi(path, realfiles.random_model(cfg, seed=1))
    realfiles.write_ovi_configs(str(d), cfg)
    return path


@pytest.fixture(scope="module")
def ovi_pipe(ovi_file):
    """The Ovi file through the nodes' entrance (unbound parts), then a hand-made encoder and a small
    frame bound in through the builder's rebind."""
    from nodes.core_inputs import UnboundVideoCodec, load_core_input_pipeline

    pipe = load_core_input_pipeline(ovi_file, "auto", "none", None, "sdpa", "cpu", log=lambda m: None)
    cfg = pipe.model.cfg
    text = UMT5Conditioner(TableEncoder(cfg.video.text_dim), cfg.video.text_len, log=lambda m: None)
    return assemble.rebind(pipe, text=text, video=UnboundVideoCodec(cfg.video.in_dim, (32, 32)))


def test_every_entrance_builds_through_the_one_builder(ovi_file, monkeypatch):
    from nodes.core_inputs import load_core_input_pipeline

    from harmony import builder

    built = []
    real = builder.build

    def spy(cls, path, *a, **k):
        built.append(os.path.basename(path))
        return real(cls, path, *a, **k)

    monkeypatch.setattr(builder, "build", spy)
    tiny = pipeline_module.HarmonyPipeline.from_pretrained(device="cpu")
    ovi = load_core_input_pipeline(ovi_file, "auto", "none", None, "sdpa", "cpu")
    assert built == ["harmony_tiny.safetensors", "ovi_tiny.safetensors"]
    for pipe in (tiny, ovi):  # the builder's decisions: CPU -> fp32 compute, no offload, the file's limit
        assert pipe.device.type == "cpu" and pipe.compute_dtype == torch.float32 and pipe.offload is None


def test_a_bad_offload_or_attention_is_refused_before_the_model_is_read(monkeypatch):
    import harmony.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "read_config", lambda *a, **k: pytest.fail("the model file was read"))
    with pytest.raises(ValueError, match="offload 'disk' is unknown; use 'none', 'block_swap' or 'cpu'"):
        assemble.build_pipeline("x.safetensors", None, offload="disk")
    with pytest.raises(ValueError, match="unknown attention backend 'fast'"):
        assemble.build_pipeline("x.safetensors", None, attention="fast")


def test_pairing_names_both_sides_and_what_to_use():
    cfg = get_config("5b")  # 4096-wide text, 48 video / 20 audio latent channels

    class Codec:
        def __init__(self, channels):
            self.latent_channels = channels

    ok = assemble.Parts(TableEncoder(4096), Codec(48), Codec(20))
    assemble.check_pairing(cfg, ok)
    names = assemble.Names(model="the --model m.safetensors", video="--video-vae v.pth",
                           fixes={"video": "use the Wan2.2 VAE"})
    with pytest.raises(assemble.PairingError) as e:
        assemble.check_pairing(cfg, assemble.Parts(ok.text, Codec(16), ok.audio), names)
    assert str(e.value) == ("--video-vae v.pth has 16 latent channels, the --model m.safetensors video tower reads "
                            "48: use the Wan2.2 VAE")
    with pytest.raises(assemble.PairingError, match="the audio codec gives 8 latent channels, the model's audio "
                                                    "tower reads 20"):
        assemble.check_pairing(cfg, assemble.Parts(ok.text, ok.video, Codec(8)))
    with pytest.raises(assemble.PairingError, match="the text encoder gives 32-wide embeddings but the model's "
                                                    "video tower reads 4096: they are not a pair"):
        assemble.check_pairing(cfg, assemble.Parts(TableEncoder(32), ok.video, ok.audio))


def test_default_negatives_follow_the_model_family(ovi_pipe):
    assert assemble.default_negatives(get_config("5b")) == (OVI_VIDEO_NEGATIVE, OVI_AUDIO_NEGATIVE)
    assert assemble.default_negatives(get_config("5b-global")) == (OVI_VIDEO_NEGATIVE, OVI_AUDIO_NEGATIVE)
    assert assemble.default_negatives(get_config("tiny")) == ("", "")
    assert ovi_pipe.negative_prompts == (OVI_VIDEO_NEGATIVE, OVI_AUDIO_NEGATIVE)  # read from the Ovi file


def test_the_bundled_model_keeps_the_empty_text_for_text_cfg():
    pipe = pipeline_module.HarmonyPipeline.from_pretrained(device="cpu", log=lambda m: None)
    assert pipe.negative_prompts == ("", "")
    neg, empty = pipe.encode_negative(), pipe.encode_text("", "", "")
    assert torch.equal(neg.video_context, empty.video_context) and torch.equal(neg.audio_context,
                                                                               empty.audio_context)


def _captured_uncond(pipe, monkeypatch, **kw):
    got = {}
    real = pipeline_module.sample

    def spy(model, cond, *a, uncond=None, **k):
        got["uncond"] = uncond
        return real(model, cond, *a, uncond=uncond, **k)

    monkeypatch.setattr(pipeline_module, "sample", spy)
    cond = pipe.encode_text("a red ball", "a thud", "")
    pipe.sample(cond, seconds=1.0, steps=1, guidance="none", text_cfg=2.0, **kw)
    return got["uncond"]


def test_text_cfg_uses_ovis_negative_prompts_one_per_tower(ovi_pipe, monkeypatch):
    cfg = ovi_pipe.model.cfg
    dim, text_len = cfg.video.text_dim, cfg.video.text_len
    uncond = _captured_uncond(ovi_pipe, monkeypatch)
    # Ovi's inference: the video tower reads the video negative, the audio tower the audio one, as given
    assert torch.equal(uncond.video_context[0], expected(OVI_VIDEO_NEGATIVE, dim, text_len))
    assert torch.equal(uncond.audio_context[0], expected(OVI_AUDIO_NEGATIVE, dim, text_len))
    # the negatives were encoded with the prompt, in the same read of the encoder, and then kept
    assert ovi_pipe.conditioner.encoder.calls[0] == ["a red ball Audio: a thud", "", OVI_VIDEO_NEGATIVE,
                                                     OVI_AUDIO_NEGATIVE]


def test_text_cfg_negatives_can_be_overridden(ovi_pipe, monkeypatch):
    cfg = ovi_pipe.model.cfg
    dim, text_len = cfg.video.text_dim, cfg.video.text_len
    uncond = _captured_uncond(ovi_pipe, monkeypatch, video_negative="blurry", audio_negative="")
    assert torch.equal(uncond.video_context[0], expected("blurry", dim, text_len))
    assert torch.equal(uncond.audio_context[0], torch.zeros(text_len, dim))  # the empty text: no rows
    with pytest.raises(pipeline_module.validate.InputError, match="video_negative must be a string, got int"):
        ovi_pipe.sample(ovi_pipe.encode_text("x", "", ""), seconds=1.0, steps=1, text_cfg=2.0, video_negative=3)


def test_rebind_pairs_the_new_part_and_leaves_the_original_alone(ovi_pipe):
    from nodes.core_inputs import UnboundVideoCodec

    with pytest.raises(assemble.PairingError, match="the video codec has 16 latent channels, the model's video "
                                                    "tower reads 48"):
        assemble.rebind(ovi_pipe, video=UnboundVideoCodec(16, (32, 32)))
    bigger = assemble.rebind(ovi_pipe, video=UnboundVideoCodec(48, (64, 64)))
    assert bigger.frame_size == (64, 64) and ovi_pipe.frame_size == (32, 32)
    assert bigger.model is ovi_pipe.model and bigger.conditioner is ovi_pipe.conditioner
