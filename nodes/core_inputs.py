"""ComfyUI's own text encoder and VAEs as inputs of the Harmony nodes.

A umT5-conditioned checkpoint (Ovi's fusion model, a Harmony 5b file) has no text
encoder or codecs of its own in ComfyUI: the loader gives a pipeline whose text
encoder and codecs are *unbound* (they know the shapes the model needs and say which
core node to connect). The nodes bind what is wired to them:

- core ``CLIP`` (CLIPLoader ``umt5_xxl_*.safetensors``, type ``wan``) -> the text node;
- core ``VAE`` Wan2.2 (VAELoader ``wan2.2_vae.safetensors``) -> video codec;
- core ``VAE`` MMAudio 16 kHz (VAELoader; ComfyUI 0.3.64 detects it) -> audio codec.
  Core's own MMAudio encode/decode work at 44.1 kHz through torchaudio resampling; the
  pack runs the *weights of that core VAE* through its own 16 kHz codec
  (``harmony.codecs.mmaudio``), exactly what Ovi's audio tower was trained on, and
  needs no torchaudio.

Every check here runs on descriptions (``host.describe_clip`` / ``host.describe_vae``)
before any compute, so a wrong wire is an error naming both sides. This module never
imports ComfyUI: only ``host`` does.
"""
from __future__ import annotations

import copy
import os
import re
import weakref

import torch

from . import host
from .harmony_lib import (assemble, bigvgan, checkpoint, contract, mmaudio, mmaudio_vae, umt5_conditioner, validate, wan_vae,
                          weightfile)
from .types import HarmonyInputError

CLIP_HINT = "CLIPLoader with umt5_xxl_fp8_e4m3fn_scaled.safetensors (or umt5_xxl_fp16.safetensors), type wan"
VIDEO_VAE_HINT = "VAELoader with wan2.2_vae.safetensors"
AUDIO_VAE_HINT = "VAELoader with ComfyUI's MMAudio 16 kHz VAE file"
UMT5_FAMILY = "umt5xxl"
WAN22, MMAUDIO = contract.WAN22_VAE, contract.MMAUDIO_16K  # the geometry of the core VAEs' codecs
VIDEO_LATENT_CHANNELS, AUDIO_LATENT_CHANNELS = WAN22.latent_channels, MMAUDIO.latent_channels


# ------------------------------------------------------------------ pure checks


def check_clip(desc: dict, node: str) -> None:
    """A core CLIP (``desc`` from ``host.describe_clip``) must be umT5; raises before any text is encoded.
    (Its width is paired with the towers' text width by ``harmony.assemble.check_pairing``.)"""
    family = desc.get("family")
    if family != UMT5_FAMILY:
        raise HarmonyInputError(
            f"{node}: clip is a {family!r} text encoder, but this model reads umT5-XXL embeddings "
            f"({UMT5_FAMILY}). Load it with {CLIP_HINT}.")


def check_video_vae(desc: dict, want_channels: int, node: str, name: str = "video_vae") -> None:
    """A core VAE as the video codec: the Wan2.2 VAE with the model's latent channels."""
    if desc.get("kind") == "mmaudio16k":
        raise HarmonyInputError(
            f"{node}: {name} is the MMAudio audio VAE; the video codec must be the Wan2.2 VAE "
            f"({VIDEO_VAE_HINT}). Wire the MMAudio VAE to audio_vae.")
    if desc.get("kind") != "wan2.2" or desc.get("latent_channels") != want_channels:
        what = (f"{desc.get('latent_channels')} latent channels, {desc.get('latent_dim')}-d latents"
                + (f", {desc.get('spatial')} px per latent" if desc.get("spatial") else ""))
        family = {4: " (an SD1/SDXL image VAE)", 16: " (an SD3/Flux image VAE or the Wan2.1 VAE)"}.get(
            desc.get("latent_channels"), "")
        raise HarmonyInputError(
            f"{node}: {name} has {what}{family}; the model's video tower reads {want_channels}-channel "
            f"video latents at {WAN22.spatial_stride} px and {WAN22.temporal_stride} frames per latent (the Wan2.2 "
            f"VAE). Load {VIDEO_VAE_HINT}.")


def check_audio_vae(desc: dict, want_channels: int, node: str, name: str = "audio_vae") -> None:
    """A core VAE as the audio codec: ComfyUI's MMAudio 16 kHz VAE with the model's latent channels."""
    if desc.get("kind") != "mmaudio16k":
        raise HarmonyInputError(
            f"{node}: {name} is not ComfyUI's MMAudio VAE ({desc.get('latent_channels')} latent channels, "
            f"{desc.get('latent_dim')}-d latents, {desc.get('model')}); the model's audio tower reads "
            f"{want_channels}-channel MMAudio 16 kHz latents. Load {AUDIO_VAE_HINT}.")
    if desc.get("latent_channels") != want_channels:
        raise HarmonyInputError(
            f"{node}: {name} gives {desc.get('latent_channels')}-channel audio latents, but the model's "
            f"audio tower reads {want_channels}. They are not a pair.")


def check_frame_size(h: int, w: int, node: str, video_codec, patch_size) -> None:
    """The frame size a model with ``video_codec`` and a video tower of ``patch_size`` can generate:
    positive multiples of the codec's spatial stride times the patch (``contract.size_multiple``)."""
    m = contract.size_multiple(video_codec, patch_size)
    if h <= 0 or w <= 0 or h % m or w % m:
        s = video_codec.spatial_stride
        raise HarmonyInputError(
            f"{node}: width and height must be positive multiples of {m} ({s} px per latent of the video "
            f"codec x the model's {m // s}x{m // s} patch), got {w}x{h}; e.g. "
            f"{m * max(1, int(w / m + 0.5))}x{m * max(1, int(h / m + 0.5))}.")


# ------------------------------------------------------------------ unbound parts


def _missing(what: str, hint: str, where: str):
    raise HarmonyInputError(
        f"This model (umT5-conditioned: Ovi / Harmony 5b) has no {what} of its own in ComfyUI: "
        f"connect {hint} to {where}.")


class UnboundText:
    """The text encoder of a model loaded without one: says which core node to connect."""

    def to(self, *a, **k):
        return self

    def __call__(self, *a, **k):
        _missing("text encoder", CLIP_HINT, "Harmony Text Conditioning's clip input")


class UnboundVideoCodec(contract.FrameRule):
    """Wan2.2-VAE geometry without weights; encode/decode ask for a core VAE."""

    spatial_stride, temporal_stride, fps = WAN22.spatial_stride, WAN22.temporal_stride, WAN22.fps

    def __init__(self, latent_channels: int, frame_size=WAN22.frame_size):
        self.latent_channels, self.frame_size = int(latent_channels), tuple(frame_size)

    def encode(self, *a, **k):
        _missing("video codec", VIDEO_VAE_HINT,
                 "video_vae on Harmony SyncCFG Sampler, Video Conditioning and Decode")

    decode = encode


class UnboundAudioCodec(contract.HopRule):
    """MMAudio 16 kHz geometry without weights; encode/decode ask for a core VAE."""

    sample_rate, hop_length, latent_rate = MMAUDIO.sample_rate, MMAUDIO.hop_length, MMAUDIO.latent_rate

    def __init__(self, latent_channels: int):
        self.latent_channels = int(latent_channels)

    def encode(self, *a, **k):
        _missing("audio codec", AUDIO_VAE_HINT,
                 "audio_vae on Harmony SyncCFG Sampler, Audio Conditioning and Decode")

    decode = encode


def is_unbound(pipe) -> bool:
    """True for a pipeline whose text encoder and codecs come from core nodes."""
    text = getattr(pipe, "conditioner", None)
    return isinstance(text, UnboundText) or isinstance(getattr(text, "encoder", None), CoreClipEncoder)


def load_core_input_pipeline(path, dtype: str, offload: str, resident_blocks, attention: str, device,
                             log=print):
    """A umT5-conditioned model file alone -> a pipeline with unbound text encoder and codecs (built by
    harmony's one builder; the nodes bind the core CLIP / VAEs wired to them: :func:`bind`).
    ``path``: the file, or its safetensors header already read (then not parsed again)."""
    def unbound(cfg, device):
        return assemble.Parts(UnboundText(), UnboundVideoCodec(cfg.video.in_dim), UnboundAudioCodec(cfg.audio.in_dim))

    return assemble.build_pipeline(path, unbound, dtype=dtype, offload=offload, resident_blocks=resident_blocks,
                                   attention=attention, device=device, log=log)


# ------------------------------------------------------------------ bound parts


class CoreClipEncoder:
    """A core umT5 CLIP as the encoder of harmony's umT5 conditioner
    (``harmony.umt5_conditioner.UMT5Conditioner``: Ovi's one prompt, the same embedding for both
    towers, fitted to the model's text length). ``dim``: the width ComfyUI reports, when it does."""

    def __init__(self, clip, dim=None):
        self.clip, self.dim = clip, (int(dim) if dim is not None else None)

    def encode(self, texts, device=None, text_len=None):
        return [host.encode_with_core_clip(self.clip, text)[0] for text in texts]


def _latent_stats(channels: int):
    if channels == len(wan_vae.LATENT_MEAN):
        return torch.tensor(wan_vae.LATENT_MEAN), torch.tensor(wan_vae.LATENT_STD)
    return torch.zeros(channels), torch.ones(channels)


class CoreVideoCodec(contract.FrameRule):
    """A core Wan2.2 VAE behind the pack's video-codec interface.

    Latents are normalised per channel with Wan2.2's mean/std (what the DiT sees; core does the
    same in its Wan22 latent format). ``encode(frames [B, T, H, W, 3])`` -> ``[B, 48, F, h, w]``;
    ``decode(latent)`` -> ``frames [B, T, H, W, 3]`` in 0..1, tiled by core when memory asks."""

    spatial_stride, temporal_stride, fps = WAN22.spatial_stride, WAN22.temporal_stride, WAN22.fps

    def __init__(self, vae, latent_channels: int, frame_size=WAN22.frame_size):
        self.vae, self.latent_channels, self.frame_size = vae, int(latent_channels), tuple(frame_size)
        self.mean, self.std = _latent_stats(self.latent_channels)

    def _stats(self, like):
        shape = (1, -1, 1, 1, 1)
        return self.mean.view(shape).to(like), self.std.view(shape).to(like)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        out = []
        for clip in frames:
            z = host.core_vae_encode(self.vae, clip)
            mean, std = self._stats(z)
            out.append((z - mean) / std)
        return torch.cat(out).to(frames.device)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(latent.float().cpu())
        frames = host.core_vae_decode(self.vae, latent.float().cpu() * std + mean)
        return frames.clamp(0, 1).to(latent.device)


_AUDIO_CODECS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def audio_codec_from_core_vae(vae, device):
    """The pack's MMAudio codec over the weights of a core MMAudio VAE (made once per core VAE)."""
    codec = _AUDIO_CODECS.get(vae)
    if codec is None:
        codec = mmaudio.MMAudioCodec.from_files(host.core_vae_state_dict(vae), None, device="cpu")
        _AUDIO_CODECS[vae] = codec
    return codec.to(device)


def pick(node: str, name: str, *candidates):
    """The one VAE among those wired (the node's own input, the conditioning's); two different
    ones are an error, since latents of one cannot be read by the other."""
    wired = [(where, v) for where, v in candidates if v is not None]
    for where, v in wired[1:]:
        if v is not wired[0][1]:
            raise HarmonyInputError(
                f"{node}: two different {name}s are connected ({wired[0][0]} and {where}); wire the same "
                f"VAELoader to both, or only one.")
    return wired[0][1] if wired else None


def bind(pipe, node: str, clip=None, video_vae=None, audio_vae=None, size=None):
    """``pipe`` with the core parts that are wired bound in (``harmony.assemble.rebind``: a new
    pipeline sharing the loaded model, the node's input is never mutated, each part paired with the
    model). Every check runs before any compute."""
    if clip is None and video_vae is None and audio_vae is None and size is None:
        return pipe
    cfg = pipe.model.cfg
    text, video, audio = None, pipe.codecs.video, None
    if clip is not None:
        if not is_unbound(pipe):
            raise HarmonyInputError(
                f"{node}: clip is connected, but this model has its own text encoder (its "
                ".text.safetensors file); disconnect clip, or load a umT5-conditioned model "
                "(Ovi / Harmony 5b).")
        desc = host.describe_clip(clip)
        check_clip(desc, node)
        text = umt5_conditioner.UMT5Conditioner(CoreClipEncoder(clip, desc.get("width")), cfg.video.text_len,
                                                log=pipe.log)
    if video_vae is not None:
        desc = host.describe_vae(video_vae)
        check_video_vae(desc, cfg.video.in_dim, node)
        video = CoreVideoCodec(video_vae, desc["latent_channels"], video.frame_size)
    if audio_vae is not None:
        check_audio_vae(host.describe_vae(audio_vae), cfg.audio.in_dim, node)
        audio = audio_codec_from_core_vae(audio_vae, pipe.device)
    if size is not None:
        if not isinstance(video, (CoreVideoCodec, UnboundVideoCodec)):
            raise HarmonyInputError(f"{node}: this model's own video codec has a fixed frame size.")
        check_frame_size(size[0], size[1], node, video, cfg.video.patch_size)
        video = copy.copy(video)
        video.frame_size = tuple(size)
    names = assemble.Names(text=f"{node}: clip", video=f"{node}: video_vae", audio=f"{node}: audio_vae",
                           fixes={"text": "use the umT5 the model was trained with",
                                  "video": f"load {VIDEO_VAE_HINT}", "audio": f"load {AUDIO_VAE_HINT}"})
    try:
        return assemble.rebind(pipe, text=text, video=video if video is not pipe.codecs.video else None,
                               audio=audio, names=names)
    except assemble.PairingError as e:
        raise HarmonyInputError(str(e)) from None


# ------------------------------------------------------------------ MMAudio in ComfyUI's layout


def comfy_mmaudio_state_dict(vae_path, vocoder_path) -> dict:
    """MMAudio's ``v1-16.pth`` + ``best_netG.pt`` -> one state dict in the layout ComfyUI 0.3.64's
    VAELoader detects as the MMAudio VAE: ``vae.*`` (conv weights already normalised: core's
    convs never renormalise), ``vocoder.*`` (weight norm folded), ``mel_converter.mel_basis`` /
    ``hann_window`` (the Slaney filterbank librosa gives, which core's MelConverter expects)."""
    codec = mmaudio.MMAudioCodec.from_files(vae_path, vocoder_path, device="cpu")
    return _comfy_layout(codec)


def _comfy_layout(codec) -> dict:
    sd = {"vae." + k: v for k, v in codec.vae.state_dict().items()}
    sd.update({"vocoder." + k: v for k, v in codec.vocoder.state_dict().items()})
    sd["mel_converter.mel_basis"] = codec.mel.mel_basis
    sd["mel_converter.hann_window"] = codec.mel.hann_window
    return {k: v.detach().float().contiguous() for k, v in sd.items()}


def write_comfy_mmaudio_vae(vae_path, vocoder_path, out_path) -> str:
    """Write :func:`comfy_mmaudio_state_dict` as a safetensors file (fp32) for ``models/vae/``."""
    return weightfile.save_safetensors(comfy_mmaudio_state_dict(vae_path, vocoder_path), out_path, {"format": "pt"})


# ------------------------------------------------------------------ the converter's command line

PROG = "python -m nodes.core_inputs mmaudio-vae"
USAGE = f"usage: {PROG} v1-16.pth best_netG.pt ComfyUI/models/vae/mmaudio_vae_16k.safetensors"
_SOURCE = "huggingface.co/hkchengrex/MMAudio, folder ext_weights/"
_ARGS = {  # role -> (the argument as named in messages, the file expected there)
    "vae": ("1st argument (the MMAudio VAE)", "MMAudio's ext_weights/v1-16.pth (the 16 kHz VAE)"),
    "vocoder": ("2nd argument (the vocoder)", "MMAudio's ext_weights/best_netG.pt (the 16 kHz BigVGAN vocoder)"),
}


class ConverterArgError(ValueError):
    """A wrong argument of the converter: the message is the one line that is printed."""


def _kind(keys) -> str:
    """What a state dict's keys look like: "vae", "vocoder", "both" (ComfyUI's one file) or "other"."""
    vae = any(k.startswith(("encoder.", "decoder.", "vae.encoder.", "vae.decoder.")) for k in keys)
    voc = any(k.startswith(("conv_pre.", "vocoder.conv_pre.")) for k in keys)
    return "both" if vae and voc else "vae" if vae else "vocoder" if voc else "other"


def _reason(e: BaseException, path: str) -> str:
    """The first sentence of a reader's message, without the file name it starts with."""
    text = " ".join(str(e).split())
    cut = text.find(path)
    if 0 <= cut < 40:  # "MMAudio VAE /x.pth is not ..." / "BigVGAN vocoder: /x.pt could not ..."
        text = text[cut + len(path):].lstrip(" :")
    depth, end = 0, len(text)
    for i, c in enumerate(text):  # the end of the first sentence: a full stop outside parentheses that
        depth += (c == "(") - (c == ")")  # ends the text or comes before a capital ("e.g." and "1.5" do not)
        if c == "." and depth <= 0 and re.match(r"\s+[A-Z]|$", text[i + 1:]):
            end = i
            break
    text = re.sub(r";\s*download or convert it again$", "", text[:end])
    return (text if len(text) <= 300 else text[:299] + "…") or type(e).__name__


def _load_arg(role: str, path: str):
    """The VAE or the vocoder module from one argument; any problem -> ConverterArgError (one line)."""
    arg, expected = _ARGS[role]
    other = "vocoder" if role == "vae" else "vae"

    def fail(problem: str, todo: str):
        raise ConverterArgError(f"{arg} {path}: {problem}; expected {expected}. Fix: {todo}")

    if not os.path.exists(path):
        fail("file not found", f"check the path, or download the file from {_SOURCE}")
    if os.path.isdir(path):
        fail("is a folder", "give the file inside it")
    what = "MMAudio VAE" if role == "vae" else "BigVGAN vocoder"
    try:
        sd = None
        if weightfile.is_pickle(path):
            sd = weightfile.read_state_dict(path, what)  # torch.load(weights_only=True): plain tensors only
            keys = list(sd)
        else:  # a safetensors file: its keys from the header alone, before any tensor is read
            header = weightfile.read_header(path, what)
            keys = header.keys()
            if _kind(keys) in (role, "both"):
                sd = weightfile.read_state_dict(header, what)
    except Exception as e:  # noqa: BLE001 - torch.load of a damaged file raises anything (KeyError, ...)
        if weightfile.is_pickle(path):  # torch's own text is long
            inner = re.search(r"\((\w+(?:Error|Exception)):", str(e)) if isinstance(e, ValueError) else None
            why = (f"not a PyTorch checkpoint of plain tensors (torch.load(weights_only=True): "
                   f"{inner.group(1) if inner else type(e).__name__}: a damaged download, or another kind of file)")
        else:  # the safetensors reader's own message (WeightFileError)
            why = _reason(e, path)
            why = why[3:] if why.startswith("is ") else why
        fail(f"cannot be read: {why}", f"download it again from {_SOURCE}")
    kind = _kind(keys)
    if kind == other:
        fail(f"it looks like {_ARGS[other][1]}", "swap the first two arguments (the order is v1-16.pth, then "
             "best_netG.pt)")
    if kind == "other":
        fail(f"holds no MMAudio {'VAE' if role == 'vae' else 'vocoder'} weights ({len(keys)} tensors, first keys "
             f"{', '.join(list(keys)[:3])})", f"give that file, from {_SOURCE}")
    try:
        if role == "vae":
            return mmaudio_vae.load_mmaudio_vae(sd)
        return bigvgan.load_bigvgan(sd)
    except ValueError as e:  # a key or shape mismatch: another model of the family (e.g. v1-44.pth)
        fail(_reason(e, "state dict"), f"give that file, from {_SOURCE}")


def _check_out(out: str, inputs) -> None:
    arg = "3rd argument (the output)"
    if not out.lower().endswith(".safetensors"):
        raise ConverterArgError(f"{arg} {out}: the output is written as safetensors, and ComfyUI's VAELoader "
                                "lists it by that name. Fix: end the name in .safetensors, e.g. "
                                "ComfyUI/models/vae/mmaudio_vae_16k.safetensors")
    for path in inputs:
        if os.path.exists(out) and os.path.exists(path) and os.path.samefile(out, path):
            raise ConverterArgError(f"{arg} {out}: it is an input file. Fix: give a new path for the output")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):  # folders that do not exist yet are made when the file is written
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConverterArgError(f"{arg} {out}: {parent} is a file, not a folder. Fix: give a path in a folder")
    if os.path.isdir(os.path.dirname(os.path.abspath(out))):
        try:
            validate.output_path(out, arg)
        except ValueError as e:
            raise ConverterArgError(" ".join(str(e).split())) from None


def convert_mmaudio_vae(vae_path: str, vocoder_path: str, out_path: str) -> str:
    """The converter with every argument checked first; a wrong one raises :class:`ConverterArgError`
    (one line naming the argument, the file, what was expected and what to do) and nothing is written."""
    _check_out(out_path, (vae_path, vocoder_path))
    vae = _load_arg("vae", vae_path)
    vocoder = _load_arg("vocoder", vocoder_path)
    codec = mmaudio.MMAudioCodec(vae, vocoder)
    try:  # atomic: a temporary file, then a rename
        return weightfile.save_safetensors(_comfy_layout(codec), out_path, {"format": "pt"})
    except (ValueError, OSError) as e:
        raise ConverterArgError(f"3rd argument (the output) {out_path}: cannot be written "
                                f"({' '.join(str(e).split())}). Fix: give a path in a folder you can write "
                                "to, with room for the file") from None


def main(argv=None) -> int:
    """``python -m nodes.core_inputs mmaudio-vae V1_16_PTH BEST_NETG_PT OUT.safetensors``.

    An error prints one line on stderr and exits 2 (a wrong argument) or 1 (anything else;
    HARMONY_DEBUG=1 shows the traceback); nothing is written then."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]) or argv[1:2] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) != 4 or argv[0] != "mmaudio-vae":
        print(f"{PROG.rsplit(' ', 1)[0]}: error: expected mmaudio-vae and 3 paths, got {len(argv)} "
              f"argument{'s' if len(argv) != 1 else ''}; {USAGE}", file=sys.stderr)
        return 2
    try:
        out = convert_mmaudio_vae(*argv[1:])
    except ConverterArgError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line, unless HARMONY_DEBUG asks for the traceback
        if os.environ.get("HARMONY_DEBUG", "").strip() not in ("", "0"):
            raise
        print(f"{PROG}: error: {type(e).__name__}: {' '.join(str(e).split())} (rerun with HARMONY_DEBUG=1 "
              "for the traceback)", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
