"""Batched generation: B clips of one job in one sampling run, each exactly what
``pipe.sample(..., seed)`` + ``pipe.decode`` gives for it alone (the clip's geometry and noise
from :func:`harmony.jobs.clip_geometry`, as the pipeline draws them).

Used by the held-out evaluation (:mod:`harmony.evaluate`), the input-following controls
(:mod:`harmony.controls`) and the ablation (:mod:`harmony.ablate`). ``model_generate_fn`` wraps
:func:`generate_batch` as the evaluation's generator; ``codec_roundtrip_fn`` sends real media
through the pipeline's codecs (the ceiling rows).
"""
from __future__ import annotations

from typing import Callable, Sequence

from .jobs import JOBS, clip_geometry
from .sampling import job_settings


def generate_batch(pipe, job: str, texts: Sequence[tuple[str, str, str]], seeds: Sequence[int],
                   seconds: float = 3.0, first_frames=None, driving_audio=None, driving_video=None,
                   ref_voices=None, guidance: str = "synccfg", steps: int = 20, sv: float | None = None,
                   sa: float | None = None, text_cfg: float = 1.0, solver: str = "dpmpp_2m",
                   shift: float | None = None, st: float | None = None, resync: float | None = None,
                   callback: Callable | None = None, keep_given: bool = True):
    """B clips of one job in ONE batched sampling run; each item is what
    ``pipe.sample(..., seed=seeds[i])`` + ``pipe.decode`` gives for it alone (same noise).

    ``texts``: ``(prompt, audio_caption, transcript)`` per item; ``first_frames``: ``[H,W,3]`` per
    item (I2AV); ``driving_audio``: ``(wave [C,T] or [T], sr)`` per item (A2V);
    ``driving_video``: ``(frames [F,H,W,3], fps)`` per item (V2A); ``ref_voices``: ``(wave, sr)``
    or None per item; ``sv`` / ``sa`` / ``shift`` / ``st`` / ``resync``: None = the model file's for ``job``;
    ``keep_given``: as ``pipe.decode`` (the given media as given: V2A's video, A2V's audio,
    I2AV's image with its detail put back). Returns
    ``[(frames [F,H,W,3] float 0..1, wave [T] float), ...]``: as ``pipe.decode`` gives them (with
    ``keep_given=False``: both decoded from the latent, the given one through its codec).
    """
    import torch

    from .model import Conditioning
    from .pipeline import AVLatent
    from .sampling import Guidance, Job, sample

    if job not in JOBS:
        raise ValueError(f"generate_batch: job {job!r} is unknown; expected one of {JOBS}")
    b = len(seeds)
    if b < 1 or len(texts) != b:
        raise ValueError(f"generate_batch: need one (prompt, caption, transcript) per seed; got {len(texts)} "
                         f"texts for {b} seeds")
    need = {"I2AV": ("first_frames", first_frames), "A2V": ("driving_audio", driving_audio),
            "V2A": ("driving_video", driving_video)}.get(job)
    if need is not None and (need[1] is None or len(need[1]) != b):
        raise ValueError(f"generate_batch: job {job} needs `{need[0]}`, one per seed ({b})")
    sv, sa, shift, st, resync = job_settings(pipe.model.cfg, job, sv, sa, shift, st, resync)
    geom = clip_geometry(seconds, pipe.fps, pipe.frame_size, pipe.codecs.video, pipe.codecs.audio)
    seconds, n_frames = geom.seconds, geom.n_frames  # the Wan VAE's 4k+1 frames, as pipe.sample
    with torch.no_grad():
        conds = []
        for i, (prompt, caption, transcript) in enumerate(texts):
            c = pipe.encode_text(prompt, caption, transcript)
            if ref_voices is not None and ref_voices[i] is not None:
                c.ref_audio = pipe.encode_audio(*ref_voices[i], name="reference voice")
            conds.append(c)
        n_ref = min(c.ref_audio.shape[1] for c in conds)
        for c in conds:
            c.ref_audio = c.ref_audio[:, :n_ref]
        cond = Conditioning.cat(conds)
        j = Job()
        if job == "A2V":
            j.clean_audio = torch.cat([pipe.encode_audio(torch.as_tensor(w), sr, seconds=seconds, name="driving audio")
                                       for w, sr in driving_audio])
        elif job == "V2A":
            j.clean_video = torch.cat([pipe.encode_video(f, fps, n_frames, "driving video") for f, fps in driving_video])
        images = [None] * b
        if job == "I2AV":  # as pipe.sample: the image fitted to the frame (kept for decoding), its latent frame 0
            fitted = [pipe.encode_first_frame(torch.as_tensor(ff, dtype=torch.float32)) for ff in first_frames]
            images = [im for im, _ in fitted]
            j.first_frame = torch.cat([z for _, z in fitted])
        draws = [geom.noise(seed) for seed in seeds]  # the same draws as pipe.sample
        noise_v = torch.cat([d[0] for d in draws]).to(pipe.device)  # fp32 ODE state
        noise_a = torch.cat([d[1] for d in draws]).to(pipe.device)
        silent, blank = pipe.anchors()
        uncond = None
        if guidance == "cfg" or text_cfg != 1.0:
            uncond = pipe.encode_text("", "", "").repeat(b)
            uncond.ref_audio = cond.ref_audio
        with pipe._resident():
            zv, za = sample(pipe.model, cond, noise_v, noise_a, steps=steps, shift=shift,
                            guidance=Guidance(guidance, sv, sa, text_cfg, True, st), job=j, uncond=uncond,
                            silent_audio_token=silent, blank_video_frame=blank, solver=solver,
                            callback=callback, log=pipe.log, resync=resync)
        out = []
        for i in range(b):  # decode one by one: exactly the single-clip decode (the audio codec seeds its noise per call)
            given = AVLatent(zv[i:i + 1].float(), za[i:i + 1].float(), pipe.fps, pipe.sample_rate, seconds, job,
                             first_frame=None if images[i] is None else images[i].cpu(),
                             driving_video=(*driving_video[i], "crop") if job == "V2A" else None,
                             driving_audio=driving_audio[i] if job == "A2V" else None)
            frames, wave, _, _ = pipe.decode(given, keep_given=keep_given)
            out.append((frames.numpy(), wave[0].numpy()))
    return out


def model_generate_fn(pipe, guidance: str = "synccfg", steps: int = 20, sv: float | None = None,
                      sa: float | None = None, text_cfg: float = 1.0, solver: str = "dpmpp_2m", max_batch: int = 8,
                      callback: Callable | None = None, shift: float | None = None, st: float | None = None,
                      resync: float | None = None):
    """A batched generator for :func:`harmony.evaluate.evaluate`: the clips of one split, one job, in one
    sampling run (or ``ceil(n / max_batch)`` runs). The conditioning is in each clip (prompt,
    audio_caption, transcript, ref_voice; ``clip.frames[0]`` for I2AV, ``clip.wave`` for A2V,
    ``clip.frames`` for V2A); ``sv`` / ``sa`` / ``shift`` / ``st`` / ``resync``: None = the model file's for
    each job."""
    def generate(job, clips, seeds):
        out = []
        for k in range(0, len(clips), max_batch):
            cs, ss = clips[k:k + max_batch], seeds[k:k + max_batch]
            out += generate_batch(
                pipe, job, [(c.prompt, c.audio_caption, c.transcript) for c in cs], ss, seconds=cs[0].seconds,
                first_frames=[c.frames[0] for c in cs] if job == "I2AV" else None,
                driving_audio=[(c.wave[None], c.sample_rate) for c in cs] if job == "A2V" else None,
                driving_video=[(c.frames, c.fps) for c in cs] if job == "V2A" else None,
                ref_voices=[(c.ref_voice[None], c.sample_rate) if c.ref_voice is not None else None for c in cs],
                guidance=guidance, steps=steps, sv=sv, sa=sa, text_cfg=text_cfg, solver=solver, callback=callback,
                shift=shift, st=st, resync=resync)
        return out
    return generate


def codec_roundtrip_fn(pipe):
    """Real media through the pipeline's codecs (the ceiling any model can reach)."""
    import torch

    def roundtrip(frames, wave):
        with torch.no_grad():
            f = pipe.codecs.video.decode(pipe.codecs.video.encode(torch.as_tensor(frames)[None]))[0]
            w = pipe.codecs.audio.decode(pipe.codecs.audio.encode(torch.as_tensor(wave)[None]))[0]
        return f.clamp(0, 1), w[: len(wave)]
    return roundtrip
