"""HarmonyPipeline: text / audio / video in, synchronized audio-video out.

One object holds the dual-tower model, its text conditioner and the codecs,
and runs the four jobs, chosen by what is given:

| job  | given                       | generated       |
|------|-----------------------------|-----------------|
| T2AV | prompt (+ caption, transcript, reference voice) | video and audio |
| I2AV | the above + ``first_frame``  | video and audio |
| A2V  | the above + ``driving_audio``| video           |
| V2A  | the above + ``driving_video``| audio           |

Used by ``python -m harmony generate`` and by the ComfyUI nodes.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from . import validate
from . import builder
from .builder import Codecs, Parts
from .jobs import (DEFAULT_MAX_SECONDS, DEFAULT_SECONDS, MIN_SECONDS, clip_geometry, job_name,  # noqa: F401 (re-exported)
                   max_seconds)
from .model import Conditioning
from .sampling import (DEFAULT_SOLVER, DEFAULT_STEPS, GUIDANCE_MODES, SOLVERS, Guidance, Job,
                       RESYNC_JOBS, job_settings, sample)

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DEFAULT_MODEL = os.path.join(ASSETS, "harmony_tiny.safetensors")

DEMO_PROMPT = ("a large face with orange hair in the middle says three syllables in a low voice. "
               "in front of a plain gray wall.")
DEMO_CAPTION = "a low voice says three syllables in a quiet room."
DEMO_TRANSCRIPT = "ba lo mi"


@dataclass
class AVLatent:
    """The joint audio-video latent passed between sampler and decoder."""

    video: torch.Tensor  # [B, Cv, F, h, w]
    audio: torch.Tensor  # [B, La, Ca]
    fps: float
    sample_rate: int
    seconds: float
    job: str = "T2AV"
    info: dict = field(default_factory=dict)
    # what the user gave, kept for decoding (``HarmonyPipeline.decode``, keep_given): the first frame
    # fitted to the frame size (small); the driving media as given (references, conformed at decode)
    first_frame: Optional[torch.Tensor] = None  # [H, W, 3] 0..1
    driving_video: Optional[tuple] = None       # (frames [F, H, W, 3], fps, fit)
    driving_audio: Optional[tuple] = None       # (wave [C, T], sample_rate)


def _check_codecs_match(cfg, codecs_path: Optional[str]):
    """A latent model only works with the codec weights it was trained on."""
    from .codecs import DEFAULT_CODECS_PATH
    from .files import sha256_file

    want = (cfg.meta or {}).get("codecs_sha256")
    path = codecs_path or DEFAULT_CODECS_PATH
    if not want or not os.path.isfile(path):
        return
    have = sha256_file(path)
    if have != want:
        raise ValueError(f"codec weights {path!r} are not the ones this model was trained with "
                         f"(sha256 {have[:12]}…, expected {want[:12]}…): its latents would decode to "
                         "noise. Restore the codec file shipped with the model, or retrain the model.")


def _log(msg: str):
    print(f"[harmony] {msg}", flush=True)


def model_limits(path: Optional[str] = None, what: str = "checkpoint") -> tuple[float, float]:
    """(shortest, longest) clip in seconds of a model file, from its header only (no weights read,
    the file never mapped), so that entrances can check a request before loading the model.
    ``what`` names the file in errors (e.g. ``"--model"``)."""
    import json

    from .families import CONFIG_KEY
    from .weightfile import read_header

    text = read_header(DEFAULT_MODEL if path is None else path, what).metadata.get(CONFIG_KEY)
    try:
        meta = json.loads(text).get("meta") if text else None
    except (ValueError, AttributeError):
        meta = None
    return MIN_SECONDS, max_seconds(meta)


def _media_pair(value, name: str, what: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise validate.InputError(f"{name}: expected a pair {what}, got {type(value).__name__}")
    return tuple(value)


class HarmonyPipeline:
    def __init__(self, model, conditioner, codecs, device=None, compute_dtype=torch.float32,
                 offload=None, max_seconds: float = DEFAULT_MAX_SECONDS, log: Callable[[str], None] = _log,
                 negative: tuple = ("", "")):
        """Built by :func:`harmony.assemble.build_pipeline` (device, dtype, offload, pairing checks).
        ``negative``: the default ``(video, audio)`` texts of text CFG's unconditional side
        (:func:`harmony.assemble.default_negatives`)."""
        self.model, self.conditioner, self.codecs = model, conditioner, codecs
        self.device = torch.device(device or "cpu")
        self.compute_dtype = compute_dtype
        self.offload = offload
        self.max_seconds = max_seconds
        self.log = log
        self.negative_prompts = tuple(negative)
        keep = getattr(conditioner, "keep", None)
        if keep is not None:  # encoded with the first prompt: text CFG then reads no encoder again
            keep(self.negative_prompts)
        self.fps = float(codecs.video.fps)
        self.sample_rate = int(codecs.audio.sample_rate)
        self._silent, self._blanks = None, {}  # SyncCFG anchors (see anchors())

    def with_parts(self, conditioner=None, video=None, audio=None) -> "HarmonyPipeline":
        """A copy sharing the loaded model, with the given text conditioner / codecs in place of these
        (the SyncCFG anchors are the codecs', so the copy computes its own). Pair the parts with the
        model first: :func:`harmony.assemble.rebind` does."""
        import copy

        new = copy.copy(self)
        new.conditioner = conditioner if conditioner is not None else self.conditioner
        new.codecs = Codecs(video if video is not None else self.codecs.video,
                            audio if audio is not None else self.codecs.audio)
        keep = getattr(new.conditioner, "keep", None)
        if keep is not None:
            keep(new.negative_prompts)
        new.fps, new.sample_rate = float(new.codecs.video.fps), int(new.codecs.audio.sample_rate)
        new._silent, new._blanks = None, {}
        return new

    # ------------------------------------------------------------------ load
    @classmethod
    def from_pretrained(cls, path: Optional[str] = None, dtype: str = "auto", offload: str = "none",
                        resident_blocks: Optional[int] = None, attention: str = "sdpa",
                        device=None, codecs: Optional[str] = None,
                        log: Callable[[str], None] = _log) -> "HarmonyPipeline":
        """Load a Harmony model file (default: the bundled tiny model).

        ``dtype``: weight storage (auto, bf16, fp16, fp32, fp8_e4m3fn, fp8_e5m2;
        scaled-fp8 files are recognised by their contents). ``offload``: "none",
        "block_swap" (``resident_blocks`` layers stay on the device) or "cpu".
        ``codecs``: codec weights file (default: the bundled tiny codecs).
        """
        path = path or DEFAULT_MODEL
        text_path = path.replace(".safetensors", ".text.safetensors")

        def parts(cfg, device):
            from .codecs import load_codecs
            from .conditioner import Conditioner

            if not os.path.exists(text_path):  # checked before any weight is read
                raise FileNotFoundError(
                    f"model file {path!r} has no text-encoder file beside it ({text_path!r}). Harmony "
                    "models trained by this project ship both. umT5-conditioned checkpoints (Ovi, the 5b "
                    "configs) run with their real components: python -m harmony generate --model FILE "
                    "--text-encoder ... --video-vae ... --audio-vae ... --vocoder ... (or --weights DIR; "
                    "README, 'Using the real weights'), or in ComfyUI with core CLIPLoader / VAELoader "
                    "nodes wired to the Harmony nodes (docs/real_weights_comfyui.md).")
            conditioner = Conditioner.from_file(text_path, cfg).to(device)
            _check_codecs_match(cfg, codecs)
            return Parts(conditioner, *load_codecs(codecs, device=device))

        return builder.build(cls, path, parts, dtype=dtype, offload=offload, resident_blocks=resident_blocks,
                              attention=attention, device=device, log=log)

    # ------------------------------------------------------------ condition
    @torch.no_grad()
    def encode_text(self, prompt: str, audio_caption: str = "", transcript: str = "") -> Conditioning:
        """Prompt, audio caption and transcript -> text contexts of both towers.

        Text longer than its encoder's token limit is cut at the end, and the log says so."""
        for name, v in (("prompt", prompt), ("audio_caption", audio_caption), ("transcript", transcript)):
            if not isinstance(v, str):
                raise TypeError(f"{name} must be a string, got {type(v).__name__}")
        self._say_truncation(prompt, audio_caption, transcript)
        self._say_unknown_words(prompt, audio_caption, transcript)
        return self.conditioner([prompt], [audio_caption], [transcript], [None], device=self.device)

    @torch.no_grad()
    def encode_negative(self, video_text: Optional[str] = None, audio_text: Optional[str] = None) -> Conditioning:
        """Text CFG's unconditional side: the video tower reads ``video_text``, the audio tower
        ``audio_text`` (each None: :attr:`negative_prompts`, Ovi's negative prompts for an Ovi-family
        model, the empty text for the tiny model). A conditioner with its own ``negative`` (umT5: each
        text encoded as given, as Ovi does) builds it; otherwise the texts go in as the prompt and the
        audio caption."""
        video_text = self.negative_prompts[0] if video_text is None else video_text
        audio_text = self.negative_prompts[1] if audio_text is None else audio_text
        if video_text or audio_text:
            self.log(f"text CFG against the negative prompts: video {video_text!r}, audio {audio_text!r}")
        negative = getattr(self.conditioner, "negative", None)
        if negative is not None:
            return negative(video_text, audio_text, device=self.device)
        return self.encode_text(video_text, audio_text, "")

    def _say_unknown_words(self, prompt: str, audio_caption: str, transcript: str):
        """One line per text with words outside the model's vocabulary (it reads them only as
        spelled-out letters, which the tiny model was never trained on)."""
        import re

        for name, value, attr in (("prompt", prompt, "prompt_tokens"),
                                  ("audio_caption", audio_caption, "caption_tokens"),
                                  ("transcript", transcript, "transcript_tokens")):
            known = getattr(getattr(self.conditioner, attr, None), "words", None)
            if not known or not value:
                continue
            known = set(known)
            unknown = list(dict.fromkeys(w for w in re.findall(r"[a-z]+|[0-9]+", value.lower())
                                         if w not in known))
            if unknown:
                shown = ", ".join(repr(w) for w in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
                self.log(f"{name}: {shown} not in this model's vocabulary; it reads such words only "
                         f"letter by letter, so they have little effect (the bundled model knows the "
                         f"words of its synthetic world: see MODEL_CARD.md)")

    def _say_truncation(self, prompt: str, audio_caption: str, transcript: str):
        for name, value, attr in (("prompt", prompt, "prompt_tokens"),
                                  ("audio_caption", audio_caption, "caption_tokens"),
                                  ("transcript", transcript, "transcript_tokens")):
            tok = getattr(self.conditioner, attr, None)
            if tok is None or not value:
                continue
            ids = tok.tokens(value)
            if len(ids) > tok.max_len:
                last = tok.decode(ids[: tok.max_len]) if hasattr(tok, "decode") else ""
                self.log(f"{name} is {len(ids)} tokens long; this model reads only the first {tok.max_len} "
                         f"tokens, so the text after ...{last[-40:]!r} is ignored. Shorten the {name} "
                         f"to keep what matters within {tok.max_len} tokens.")

    def conform_audio(self, wave: torch.Tensor, sample_rate: int, seconds: Optional[float] = None,
                      name: str = "audio") -> torch.Tensor:
        """Waveform ``[C, T]`` or ``[T]`` at any rate -> mono ``[T']`` at the model's rate (``seconds``
        long, cut or padded with silence, when given): what :meth:`encode_audio` encodes."""
        from .media import resample_audio

        wave, sample_rate = validate.wave(wave, sample_rate, name, scan=False)
        if seconds is not None:
            seconds = validate.number(seconds, "seconds", 3, low=0, low_open=True)
            # crop before resampling: only what will be used (+ the resampler's reach) is resampled
            keep = math.ceil(seconds * sample_rate) + math.ceil(0.05 * sample_rate)
            wave = wave[:, :keep]
        validate.finite(wave, name, "give a clean clip (NaN / inf samples would turn the whole result into NaN)")
        mono = wave.mean(0)
        if sample_rate != self.sample_rate:
            mono = torch.as_tensor(resample_audio(mono, sample_rate, self.sample_rate), dtype=torch.float32)
        if seconds is not None:
            n = int(round(seconds * self.sample_rate))
            mono = torch.nn.functional.pad(mono[:n], (0, max(0, n - mono.shape[-1])))
        return mono

    @torch.no_grad()
    def encode_audio(self, wave: torch.Tensor, sample_rate: int, seconds: Optional[float] = None,
                     name: str = "audio") -> torch.Tensor:
        """Waveform ``[C, T]`` or ``[T]`` at any rate -> audio latent ``[1, La, Ca]``."""
        mono = self.conform_audio(wave, sample_rate, seconds, name)
        return self.codecs.audio.encode(mono[None].to(self.device))

    def conform_frames(self, frames, fps: Optional[float] = None, name: str = "video",
                       fit: str = "crop", max_frames: Optional[int] = None) -> torch.Tensor:
        """Frames ``[F, H, W, 3]`` in 0..1 at any size / fps -> the model's fps and frame size.

        ``fit``: how another aspect ratio is fitted to the frame: "crop" (centre), "letterbox"
        or "stretch" (``harmony.media.FIT_MODES``); each change is logged once. ``max_frames``:
        keep at most this many frames at the model's rate (cut before resizing, and the resampler
        makes no more), so the work is bounded by what the run uses."""
        from .media import fit_frames, resample_video

        frames, fps = validate.frames(frames, fps, name)
        frames = frames.float()
        if max_frames is not None:
            max_frames = validate.integer(max_frames, "max_frames", 16, low=1)
        if fps is not None and abs(fps - self.fps) > 1e-3:
            self.log(f"{name}: resampling {frames.shape[0]} frames from {fps:g} fps to {self.fps:g} fps")
            frames = torch.as_tensor(resample_video(frames, fps, self.fps, max_frames=max_frames))
        if max_frames is not None:
            frames = frames[:max_frames]
        h, w = self.frame_size
        frames = torch.as_tensor(fit_frames(frames, h, w, fit, name, log=self.log))
        return frames.clamp(0, 1)

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor, fps: Optional[float] = None,
                     n_frames: Optional[int] = None, name: str = "video", fit: str = "crop") -> torch.Tensor:
        """Frames ``[F, H, W, 3]`` in 0..1 at any size / fps -> video latent ``[1, C, F', h, w]``."""
        frames = self.conform_clip(frames, fps, n_frames, name, fit)
        return self.codecs.video.encode(frames[None].to(self.device))

    @torch.no_grad()
    def encode_first_frame(self, image, fit: str = "crop") -> tuple[torch.Tensor, torch.Tensor]:
        """A first frame at any size -> (the image fitted to the frame ``[H, W, 3]``, its latent frame
        ``[1, C, 1, h, w]``): what I2AV holds clean, and what decoding puts the detail back from."""
        fitted = self.conform_frames(image, None, "first frame", fit, max_frames=1)  # [1, H, W, 3]
        return fitted[0], self.codecs.video.encode(fitted[None].to(self.device))[:, :, :1]

    def conform_clip(self, frames: torch.Tensor, fps: Optional[float] = None, n_frames: Optional[int] = None,
                     name: str = "video", fit: str = "crop") -> torch.Tensor:
        """Frames at any size / fps -> ``[n_frames, H, W, 3]`` at the model's (the last frame held when
        the clip is shorter): what :meth:`encode_video` encodes."""
        if n_frames is not None:
            n_frames = validate.integer(n_frames, "n_frames", 16, low=1)
            frames, fps = validate.frames(frames, fps, name, scan=False)
            # crop before resampling / resizing: source frames up to the last one used, no further
            ratio = (fps / self.fps) if fps is not None else 1.0
            frames = frames[: math.ceil(n_frames * ratio) + 1]
        frames = self.conform_frames(frames, fps, name, fit, max_frames=n_frames)
        if n_frames is not None:
            if frames.shape[0] < n_frames:  # hold the last frame
                frames = torch.cat([frames, frames[-1:].expand(n_frames - frames.shape[0], -1, -1, -1)])
            frames = frames[:n_frames]
        return frames

    @property
    def frame_size(self):
        """(H, W) of the frames generated: the video codec's ``frame_size``."""
        return tuple(self.codecs.video.frame_size)

    @property
    def size_multiple(self) -> int:
        """Frame heights and widths this model can generate are multiples of this: the video
        codec's spatial stride times the video tower's spatial patch."""
        from .codecs.contract import size_multiple

        return size_multiple(self.codecs.video, self.model.cfg.video.patch_size)

    @torch.no_grad()
    def anchors(self, blank: bool = True):
        """SyncCFG's null anchors ``(silent-audio token [Ca], blank video frame [Cv, 1, h, w])``,
        each computed once (the blank frame once per frame size). ``blank=False`` gives ``None`` for
        the blank frame, so the video encoder is not needed.

        * silent audio: the audio codec's ``silence_token()`` when it has one (MMAudio: the latent of
          digital silence away from the clip's ends, :meth:`MMAudioCodec.silence_token`), else the
          mean token of the codec's latent of 1 s of silence (the toy codec);
        * blank frame: a mid-grey frame encoded alone through the video codec (the Wan2.2 VAE
          encodes a clip's first frame alone: this is the first latent frame of that frame held
          still). Guidance uses it only before a first estimate exists (T2AV's first step): a given
          first frame (I2AV) or driving video (V2A) is held still instead (``harmony.guidance``).
        """
        if self._silent is None:
            token = getattr(self.codecs.audio, "silence_token", None)
            if token is not None:
                self._silent = token().to(self.device)
            else:
                silence = torch.zeros(1, int(self.sample_rate), device=self.device)
                self._silent = self.codecs.audio.encode(silence)[0].mean(0)
        if not blank:
            return self._silent, None
        size = self.frame_size
        if size not in self._blanks:
            grey = torch.full((1, 1, size[0], size[1], 3), 0.5, device=self.device)
            self._blanks[size] = self.codecs.video.encode(grey)[0]
        return self._silent, self._blanks[size]

    def _resident(self):
        """Full CPU offload: keep the model on the device for one whole sampling run."""
        import contextlib

        loaded = getattr(self.offload, "loaded", None)
        return loaded() if loaded is not None else contextlib.nullcontext()

    # ---------------------------------------------------------------- sample
    def _plan_seconds(self, seconds, driving_audio, driving_video):
        """Clip length: requested, or the driving media's, capped to what the model supports."""
        media = None
        if driving_audio is not None:
            wave, sr = driving_audio
            media = ("driving audio", torch.as_tensor(wave).shape[-1] / float(sr))
        elif driving_video is not None:
            frames, fps = driving_video
            media = ("driving video", torch.as_tensor(frames).shape[0] / float(fps or self.fps))
        if media is not None:
            name, length = media
            if length < MIN_SECONDS:
                raise ValueError(f"{name} is {length:.2f} s long; at least {MIN_SECONDS:g} s is needed. "
                                 "Use a longer clip.")
            if seconds is None or seconds > length:
                if seconds is not None:
                    self.log(f"{name} is {length:.2f} s: generating {length:.2f} s instead of {seconds:g} s")
                seconds = length
        seconds = float(seconds if seconds is not None else DEFAULT_SECONDS)
        if seconds < MIN_SECONDS:
            raise ValueError(f"seconds must be at least {MIN_SECONDS:g}, got {seconds:g}")
        if seconds > self.max_seconds:
            self.log(f"{seconds:g} s is longer than this model supports; capped to {self.max_seconds:g} s")
            seconds = self.max_seconds
        return seconds

    @torch.no_grad()
    def sample(self, cond: Conditioning, seconds: Optional[float] = None, seed: int = 0,
               steps: int = DEFAULT_STEPS, shift: Optional[float] = None, sv: Optional[float] = None,
               sa: Optional[float] = None, text_cfg: float = 1.0, guidance: str = "synccfg",
               solver: str = DEFAULT_SOLVER, first_frame=None,
               driving_audio=None, driving_video=None, ref_voice=None,
               callback: Optional[Callable] = None, cancel: Optional[Callable] = None,
               batched: bool = True, fit: str = "crop", preview: Optional[Callable] = None,
               video_negative: Optional[str] = None, audio_negative: Optional[str] = None,
               st: Optional[float] = None, resync: Optional[float] = None) -> AVLatent:
        """Sample a joint latent. ``driving_audio``/``ref_voice``: ``(wave [C,T], sr)``;
        ``driving_video``: ``(frames [F,H,W,3], fps)``; ``first_frame``: ``[H,W,3]``;
        ``fit``: how frames of another aspect ratio meet the model's frame (crop, letterbox, stretch);
        ``shift`` / ``sv`` / ``sa`` / ``st`` (the timing anchor's scale, guidance.Guidance) / ``resync``
        (T2AV / I2AV: the resync pass's share of the schedule, sampling.sample; 0 = off):
        None = the model file's tuned value for the job (jobs.tuned_settings);
        ``preview(step, total, x0_video, x0_audio)``: the step's clean estimate (latents);
        ``video_negative`` / ``audio_negative``: the texts text CFG (``text_cfg`` != 1, or
        ``guidance="cfg"``) contrasts each tower with, instead of :attr:`negative_prompts`."""
        from .media import FIT_MODES

        if fit not in FIT_MODES:
            raise validate.InputError(f"fit: {fit!r} is unknown; use one of {', '.join(FIT_MODES)}")
        # a setting not given: the model file's tuned one for this job (jobs.tuned_settings)
        name = job_name(driving_audio is not None, driving_video is not None, first_frame is not None)
        sv, sa, shift, st, resync = job_settings(self.model.cfg, name, sv, sa, shift, st, resync)
        # every input is checked before any compute (harmony.validate)
        args = validate.sampling_args(
            seconds_value=seconds, seed=seed, steps=steps, shift=shift, sv=sv, sa=sa, text_cfg=text_cfg,
            st=st, resync=resync, guidance=guidance, solver=solver, min_seconds=MIN_SECONDS,
            max_seconds=self.max_seconds,
            guidance_modes=GUIDANCE_MODES, solvers=SOLVERS)
        seconds, seed, steps, shift = args["seconds"], args["seed"], args["steps"], args["shift"]
        sv, sa, text_cfg, st, resync = args["sv"], args["sa"], args["text_cfg"], args["st"], args["resync"]
        validate.conditioning(cond, "cond")
        for name, value in (("video_negative", video_negative), ("audio_negative", audio_negative)):
            if value is not None:
                validate.text(value, name)
        if driving_audio is not None:
            wave, sr = _media_pair(driving_audio, "driving_audio", "(wave [channels, samples], sample_rate)")
            driving_audio = validate.wave(wave, sr, "driving audio", scan=False)
        if ref_voice is not None:
            wave, sr = _media_pair(ref_voice, "ref_voice", "(wave [channels, samples], sample_rate)")
            wave, sr = validate.wave(wave, sr, "reference voice", scan=False)
            if wave.shape[-1] > self.max_seconds * sr:
                self.log(f"reference voice is {wave.shape[-1] / sr:.2f} s: using its first "
                         f"{self.max_seconds:g} s (a 1-3 s clip is enough)")
                wave = wave[:, : int(self.max_seconds * sr)]
            ref_voice = validate.wave(wave, sr, "reference voice")
        if driving_video is not None:
            frames, fps = _media_pair(driving_video, "driving_video", "(frames [F, H, W, 3], fps)")
            driving_video = validate.frames(frames, fps, "driving video", scan=False, fps_required=True)
        if first_frame is not None:
            ff, _ = validate.frames(first_frame, None, "first frame")
            if ff.shape[0] != 1:
                raise validate.InputError(
                    f"first frame: got {ff.shape[0]} frames (shape {tuple(ff.shape)}); I2AV starts from one "
                    "image [H, W, 3]: pass the one you want, e.g. first_frame=frames[0]")
            if driving_video is not None:
                self.log("first frame not used: the driving video gives every frame (V2A)")
        seconds = self._plan_seconds(seconds, driving_audio, driving_video)
        geom = clip_geometry(seconds, self.fps, self.frame_size, self.codecs.video, self.codecs.audio)
        n_frames = geom.n_frames
        # crop driving media to what is used, then scan it for NaN / inf, before any encoding
        if driving_audio is not None:
            wave, sr = driving_audio
            keep = math.ceil(seconds * sr)
            if wave.shape[-1] > keep + 1:
                self.log(f"driving audio is {wave.shape[-1] / sr:.2f} s: using its first {seconds:g} s")
            validate.finite(wave[:, :keep], "driving audio", "give a clean clip (NaN / inf samples would "
                                                             "turn the whole result into NaN)")
        if driving_video is not None:
            frames, fps = driving_video
            keep = math.ceil(n_frames * fps / self.fps) + 1
            if frames.shape[0] > keep:
                self.log(f"driving video is {frames.shape[0] / fps:.2f} s: using its first {seconds:g} s")
            validate.finite(frames[:keep], "driving video", "give clean frames (a NaN / inf pixel would "
                                                            "spread through the whole clip)")
        cond = Conditioning(cond.video_context, cond.audio_context, cond.ref_audio)
        if ref_voice is not None:
            cond.ref_audio = self.encode_audio(*ref_voice, name="reference voice")
        job = Job()
        if driving_audio is not None:
            job.clean_audio = self.encode_audio(*driving_audio, seconds=seconds, name="driving audio")
        if driving_video is not None:
            job.clean_video = self.encode_video(driving_video[0], driving_video[1], n_frames, "driving video", fit)
        image = None
        if first_frame is not None and driving_video is None:
            image, job.first_frame = self.encode_first_frame(ff, fit)
        noise_v, noise_a = (n.to(self.device) for n in geom.noise(seed))  # fp32 ODE state
        silent = blank = None  # the anchors only where guidance uses them: no codec loaded for nothing
        if guidance == "synccfg":  # the blank frame only while no first-frame estimate exists (T2AV)
            t2av = job.clean_audio is None and job.clean_video is None and job.first_frame is None
            silent, blank = self.anchors(blank=t2av)
        uncond = None
        if guidance == "cfg" or text_cfg != 1.0:
            uncond = self.encode_negative(video_negative, audio_negative)
            uncond.ref_audio = cond.ref_audio
        self.log(f"{job.name}: {seconds:g} s, {steps} steps, {guidance} (sv={sv:g}, sa={sa:g}, "
                 f"text_cfg={text_cfg:g}{f', st={st:g}' if st else ''}), shift {shift:g}, solver {solver}, seed {seed}"
                 + (f", resync {resync:g} (A2V's settings)" if resync and job.name in RESYNC_JOBS else ""))
        with self._resident():
            zv, za = sample(self.model, cond, noise_v, noise_a, steps=steps, shift=shift,
                            guidance=Guidance(guidance, sv, sa, text_cfg, batched, st), job=job,
                            uncond=uncond, silent_audio_token=silent, blank_video_frame=blank,
                            solver=solver, callback=callback, cancel=cancel, preview=preview,
                            dtype=self.compute_dtype, log=self.log, resync=resync)
        return AVLatent(zv.float(), za.float(), self.fps, self.sample_rate, seconds, job.name,
                        {"seed": seed, "steps": steps, "guidance": guidance, "sv": sv, "sa": sa, "shift": shift,
                         "st": st, "resync": resync if job.name in RESYNC_JOBS else 0.0},
                        None if image is None else image.cpu(),
                        None if driving_video is None else (*driving_video, fit), driving_audio)

    # ---------------------------------------------------------------- decode
    @torch.no_grad()
    def decode(self, latent: AVLatent, keep_given: bool = True):
        """-> (frames [F, H, W, 3] float 0..1, wave [1, T] float, sample_rate, fps).

        ``keep_given``: what the user gave comes back as given, not through the codecs: V2A's frames
        are the driving video and A2V's sound the driving audio (at the model's rate and size, as
        they were encoded), and a given first frame (I2AV, A2V from an image) gets back what the
        video codec lost of it wherever the frames still show it (:mod:`harmony.codecs.keyframe`).
        ``False``: both modalities decoded from the latent."""
        if not isinstance(latent, AVLatent):
            raise TypeError(f"decode expects an AVLatent, got {type(latent).__name__}")
        validate.latent(latent, "latent")
        frames = self.codecs.video.decode(latent.video.to(self.device))[0].clamp(0, 1).cpu()
        wave = self.codecs.audio.decode(latent.audio.to(self.device))[0].clamp(-1, 1).cpu()
        n = int(round(latent.seconds * self.sample_rate))
        wave = wave.reshape(1, -1)[:, :n]
        if keep_given:
            quiet, self.log = self.log, (lambda m: None)  # conformed as at sampling, which said how
            try:
                if latent.driving_video is not None:
                    given, fps, fit = latent.driving_video
                    frames = self.conform_clip(given, fps, frames.shape[0], "driving video", fit).float().cpu()
                elif latent.first_frame is not None:
                    frames = self.first_frame_detail(frames, latent.first_frame)
                if latent.driving_audio is not None:
                    mono = self.conform_audio(*latent.driving_audio, seconds=latent.seconds, name="driving audio")
                    wave = mono.reshape(1, -1)[:, : wave.shape[-1]].float().cpu()
            finally:
                self.log = quiet
        return frames, wave, self.sample_rate, latent.fps

    @torch.no_grad()
    def first_frame_detail(self, frames: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Decoded ``frames [F, H, W, 3]`` with the given first frame's lost detail put back where
        they still show it (:func:`harmony.codecs.keyframe.first_frame_detail`)."""
        from .codecs.keyframe import first_frame_detail

        image = image.float().clamp(0, 1)
        if tuple(image.shape) != tuple(frames.shape[1:]):
            raise ValueError(f"decode: the latent's first frame is {tuple(image.shape)} but it decodes to "
                             f"frames of {tuple(frames.shape[1:])}; sample the latent again")
        video = self.codecs.video
        rt = video.decode(video.encode(image[None, None].to(self.device)))[0, 0].clamp(0, 1).cpu()
        return first_frame_detail(frames, image, rt)
