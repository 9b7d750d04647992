"""Input controls: does each job follow its input? (issue 10)

Each control gives a job an input whose effect on the output is known and
measures that effect on DECODED media, next to the same measurement on the
real media through the codecs (``ceiling``: what a perfect latent model gives):

- V2A (empty texts: the video is the only information)
  - ``v2a_static``: a lamp that never lights -> (almost) no audio onsets
    (``loud_onsets``, absolute threshold; a steady ambience bed gives none);
  - ``v2a_flash``: the same lamp flashing at known frames -> audio onsets at
    those times: recall of the flash times (+-1 frame) minus the recall of the
    OTHER timing's flash times (audio that ignores the video scores 0 here; the
    audio codec adds echo onsets ~3 frames after a chime, so recall is used
    rather than F1);
  - ``v2a_two_videos``: two flash timings at the same seed -> different audio
    (loudness-envelope correlation of the two results).
- I2AV (talking-face scenes: the face does not move, only its mouth; the
  scene's texts and its real first frame):
  - ``i2av_persist``: frames 1..N against the codec's own round trip of the
    image (mean PSNR): the real clip through the codec stays above 55 dB, an
    unrelated scene gives ~15 dB;
  - ``i2av_no_cut``: frame 1 against frame 0 (PSNR): no jump after the given frame;
  - ``i2av_foreign``: images from outside the world (`foreign_images`: a photo, a flat-colour
    icon, a text logo, from matplotlib's sample data), empty texts: frames 1..N against the
    image, in dB, minus the codec round trip's (0 = as good as the codec allows);
  - ``i2av_sharp``: the same clips as the user gets them, decoded with the first-frame detail
    (:mod:`harmony.codecs.keyframe`): frames 1..N against the image itself, in dB.
  The three I2AV controls above measure the model on the plain decode (what it keeps of the
  image's latent), so they do not change with the decoder's detail step.
- A2V (the scene's texts, driving audio from the world):
  - ``a2v_tones``: a lamp's chimes (tone bursts) at known frames -> visual
    events at those times (F1 at +-1 frame);
  - ``a2v_speech``: a talking face's voice (syllables) -> visual events (the
    mouth opening) at the syllable onsets (F1 at +-1 frame).

Thresholds (``THRESHOLDS``) are what a working model must reach; each
result says ``passed``. ``run_controls(pipe, seeds, steps)`` runs all of them
in three batched sampling runs (one per job); ``format_controls`` prints them.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

from .batch_generate import codec_roundtrip_fn, generate_batch
from .metrics import (detect_visual_events, envelope_correlation, event_f1, event_prf, first_frame_similarity,
                      loud_onsets, psnr)
from .world import FPS as WORLD_FPS
from .world import render, sample_scene
from .world import prompts as _prompts
from .world.scene import SceneObject, heldout_seeds

SECONDS = 3.0
FLASH_A = (8, 20, 32)        # lamp flash frames of the world (16 fps): 0.5, 1.25, 2.0 s
FLASH_B = (13, 25, 38)       # >= 5 frames from every FLASH_A frame: no match at +-1 frame
# Generated and round-tripped media are measured at the pipeline's rates (its codecs'), with a
# tolerance of one of its frames; the flash times are the world's.

# name -> (comparison, threshold, what it means)
THRESHOLDS = {
    "v2a_static": ("<=", 0.5, "mean audio onsets per clip for a lamp that never lights"),
    "v2a_flash": (">=", 0.6, "recall of the flash times by audio onsets minus recall of the other video's"),
    "v2a_two_videos": ("<=", 0.5, "loudness-envelope correlation of the audio for two flash timings, same seed"),
    "i2av_persist": (">=", 30.0, "mean PSNR (dB) of frames 1..N vs the image through the codec"),
    "i2av_no_cut": (">=", 30.0, "PSNR (dB) of frame 1 vs frame 0"),
    "i2av_foreign": (">=", -3.0, "out-of-world images: PSNR (dB) of frames 1..N vs the image, minus the "
                                 "codec round trip's"),
    "i2av_sharp": (">=", 20.0, "out-of-world images as decoded (first-frame detail): PSNR (dB) of frames "
                               "1..N vs the image"),
    "a2v_tones": (">=", 0.8, "F1 of visual events vs the chime times (+-1 frame)"),
    "a2v_speech": (">=", 0.8, "F1 of visual events vs the syllable onsets (+-1 frame)"),
}


def _scene_seed(split: str, index: int) -> int:
    return heldout_seeds(split, index + 1)[index]


def lamp_scene(flash_frames: Sequence[int], index: int = 0, seconds: float = SECONDS):
    """A held-out ambient scene (background, ambience) with one large lamp in the middle
    flashing (and chiming) on ``flash_frames``; no other object. Texts rewritten to match."""
    base = sample_scene(_scene_seed("ambient", index), "ambient", seconds)
    scene = copy.deepcopy(base)
    colour = base.objects[0].colour if base.objects else "red"
    r = 6.0
    scene.objects = [SceneObject(id="obj0", kind="lamp", colour=colour, size="large", position="middle",
                                 radius=r, x=32.0, y=26.0, event_frames=sorted(int(f) for f in flash_frames),
                                 pitch_hz=5200.0 / r)]
    scene.face = None
    scene.prompt, scene.audio_caption = _prompts.write_texts(scene, np.random.default_rng([base.seed, 99]))
    return scene


def speech_scene(index: int = 0, seconds: float = SECONDS):
    """A held-out speech-split scene: a talking face, syllables at known onset frames."""
    return sample_scene(_scene_seed("speech", index), "speech", seconds)


FOREIGN_IMAGES = {"photo": "grace_hopper.jpg", "shape": "Minduka_Present_Blue_Pack.png", "screenshot": "logo2.png"}
"""Out-of-world first frames nobody here made: matplotlib's sample data (a photograph, a flat-colour
icon, a text logo on white), centre-cropped to a square and resized to 64x64."""


def foreign_images(size: int = 64) -> dict:
    """``{kind: image [size, size, 3] float32 0..1}`` from matplotlib's sample data; ``{}`` when
    matplotlib is not installed (the ``i2av_foreign`` control is then skipped)."""
    try:
        import matplotlib.cbook as cbook
    except ImportError:
        return {}
    from PIL import Image

    out = {}
    for kind, name in FOREIGN_IMAGES.items():
        with Image.open(cbook.get_sample_data(name, asfileobj=False)) as im:
            im = im.convert("RGBA")
            flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
            flat.alpha_composite(im)
            w, h = flat.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
            sq = flat.convert("RGB").crop(box).resize((size, size), Image.BICUBIC)
        out[kind] = np.asarray(sq, dtype=np.float32) / 255.0
    return out


def _detailed(pipe, frames, image) -> np.ndarray:
    """Decoded ``frames`` as ``pipe.decode`` gives them with the first frame ``image`` (its detail put back)."""
    import torch

    fitted = pipe.conform_frames(torch.as_tensor(image, dtype=torch.float32)[None], None, "first frame",
                                 max_frames=1)[0]
    return pipe.first_frame_detail(torch.as_tensor(frames), fitted).numpy()


def _compare(name: str, value: float) -> bool:
    op, thr, _ = THRESHOLDS[name]
    return bool(value <= thr) if op == "<=" else bool(value >= thr)


def _result(name, job, values, ceiling, extra=None) -> dict:
    v = float(np.mean(values))
    out = {"name": name, "job": job, "value": v, "per_seed": [float(x) for x in values],
           "ceiling": float(ceiling), "threshold": THRESHOLDS[name][1], "op": THRESHOLDS[name][0],
           "meaning": THRESHOLDS[name][2], "passed": _compare(name, v)}
    if extra:
        out.update(extra)
    return out


def _recall(wave, times, sr: int, fps: float) -> float:
    pred = loud_onsets(wave, sr, fps, num_frames=int(SECONDS * fps))
    return event_prf(pred, times, 1.0 / fps + 1e-6)["recall"]


def run_controls(pipe, seeds: Sequence[int] = (0, 1), steps: int = 20, guidance: str = "synccfg",
                 sv: float | None = None, sa: float | None = None, jobs=("V2A", "I2AV", "A2V"),
                 shift: float | None = None, text_cfg: float = 1.0, solver: str = "dpmpp_2m",
                 st: float | None = None, resync: float | None = None) -> list[dict]:
    """All controls for ``jobs``, each averaged over the sampling ``seeds``; one batched
    sampling run per job, at ``sv`` / ``sa`` / ``shift`` / ``st`` / ``resync`` (None: the model file's for each job, as
    a user who sets none gets them). Returns a list of result dicts (``name``, ``job``, ``value``,
    ``per_seed``, ``ceiling``, ``threshold``, ``op``, ``passed``, ...)."""
    seeds = [int(s) for s in seeds]
    k = len(seeds)
    rt = codec_roundtrip_fn(pipe)
    kw = dict(seconds=SECONDS, guidance=guidance, steps=steps, sv=sv, sa=sa, shift=shift, text_cfg=text_cfg,
              solver=solver, st=st, resync=resync)
    results = []
    sr, fps = int(pipe.sample_rate), float(pipe.fps)
    tol = 1.0 / fps + 1e-6  # one generated frame
    times_a, times_b = [f / WORLD_FPS for f in FLASH_A], [f / WORLD_FPS for f in FLASH_B]

    if "V2A" in jobs:
        clips = [render(lamp_scene(f)) for f in ((), FLASH_A, FLASH_B)]
        real = [rt(c.frames, c.wave) for c in clips]
        order = [c for c in clips for _ in seeds]                       # static x k, A x k, B x k
        out = generate_batch(pipe, "V2A", [("", "", "")] * len(order), seeds * 3,
                             driving_video=[(c.frames, c.fps) for c in order], **kw)
        waves = [w for _, w in out]
        st, fa, fb = waves[:k], waves[k:2 * k], waves[2 * k:]
        n_real_static = len(loud_onsets(real[0][1], sr, fps))
        results.append(_result("v2a_static", "V2A", [len(loud_onsets(w, sr, fps)) for w in st], n_real_static,
                               {"flashing_onsets": float(np.mean([len(loud_onsets(w, sr, fps)) for w in fa]))}))
        own = [_recall(w, times_a, sr, fps) for w in fa] + [_recall(w, times_b, sr, fps) for w in fb]
        other = [_recall(w, times_b, sr, fps) for w in fa] + [_recall(w, times_a, sr, fps) for w in fb]
        real_own = [_recall(real[1][1], times_a, sr, fps), _recall(real[2][1], times_b, sr, fps)]
        real_other = [_recall(real[1][1], times_b, sr, fps), _recall(real[2][1], times_a, sr, fps)]
        results.append(_result("v2a_flash", "V2A", [a - b for a, b in zip(own, other)],
                               np.mean(real_own) - np.mean(real_other),
                               {"recall_own": float(np.mean(own)), "recall_other": float(np.mean(other))}))
        results.append(_result("v2a_two_videos", "V2A", [envelope_correlation(a, b, sr, fps) for a, b in zip(fa, fb)],
                               envelope_correlation(real[1][1], real[2][1], sr, fps),
                               {"same_video_two_seeds": envelope_correlation(fa[0], fa[1], sr, fps) if k > 1
                                else float("nan")}))

    if "I2AV" in jobs:
        clips = [render(speech_scene(i)) for i in (0, 1)]
        idx = [i for i in range(len(clips)) for _ in seeds]
        order = [clips[i] for i in idx]
        out = generate_batch(pipe, "I2AV", [(c.prompt, c.audio_caption, c.transcript) for c in order],
                             seeds * len(clips), first_frames=[c.frames[0] for c in order],
                             ref_voices=[(c.ref_voice[None], c.sample_rate) for c in order],
                             keep_given=False, **kw)
        img_rt = [np.asarray(rt(c.frames[:1], c.wave)[0])[0] for c in clips]   # the codec's own round trip
        real_frames = [np.asarray(rt(c.frames, c.wave)[0]) for c in clips]
        persist = [first_frame_similarity(f, img_rt[i])["persist_psnr_db"] for (f, _), i in zip(out, idx)]
        jump = [psnr(f[1], f[0]) for f, _ in out]
        extra = {"frame0_vs_image_db": float(np.mean([psnr(f[0], order[j].frames[0]) for j, (f, _) in enumerate(out)])),
                 "codec_roundtrip_vs_image_db": float(np.mean([psnr(r, c.frames[0]) for r, c in zip(img_rt, clips)]))}
        results.append(_result("i2av_persist", "I2AV", persist,
                               np.mean([first_frame_similarity(f, r)["persist_psnr_db"]
                                        for f, r in zip(real_frames, img_rt)]), extra))
        results.append(_result("i2av_no_cut", "I2AV", jump, np.mean([psnr(f[1], f[0]) for f in real_frames])))
        images = foreign_images()
        if images:  # the image is the only information: empty texts, no voice
            kinds = [k for k in images for _ in seeds]
            out = generate_batch(pipe, "I2AV", [("", "", "")] * len(kinds), seeds * len(images),
                                 first_frames=[images[k] for k in kinds], keep_given=False, **kw)
            silence = np.zeros(int(SECONDS * sr), np.float32)
            rt_db = {k: psnr(np.asarray(rt(img[None], silence)[0])[0], img) for k, img in images.items()}
            per = [first_frame_similarity(f, images[k])["persist_psnr_db"] - rt_db[k] for (f, _), k in zip(out, kinds)]
            results.append(_result("i2av_foreign", "I2AV", per, 0.0, {
                f"{k}_persist_minus_roundtrip_db": float(np.mean([p for p, kk in zip(per, kinds) if kk == k]))
                for k in images} | {f"{k}_roundtrip_db": v for k, v in rt_db.items()}))
            # as the user gets them: the same latents decoded with the image's detail put back; the
            # ceiling is the image itself held still, through the codec and the same step
            sharp = [first_frame_similarity(_detailed(pipe, f, images[k]), images[k])["persist_psnr_db"]
                     for (f, _), k in zip(out, kinds)]
            held = [first_frame_similarity(_detailed(pipe, np.asarray(rt(np.repeat(img[None], 3, 0), silence)[0]),
                                                     img), img)["persist_psnr_db"] for img in images.values()]
            results.append(_result("i2av_sharp", "I2AV", sharp, np.mean(held), {
                f"{k}_sharp_db": float(np.mean([p for p, kk in zip(sharp, kinds) if kk == k])) for k in images}))

    if "A2V" in jobs:
        clips = [render(lamp_scene(FLASH_A)), render(speech_scene(1)), render(speech_scene(2))]
        order = [c for c in clips for _ in seeds]
        out = generate_batch(pipe, "A2V", [(c.prompt, c.audio_caption, c.transcript) for c in order],
                             seeds * len(clips), driving_audio=[(c.wave[None], c.sample_rate) for c in order],
                             ref_voices=[(c.ref_voice[None], c.sample_rate) if c.ref_voice is not None else None
                                         for c in order], **kw)
        f1 = [event_f1(detect_visual_events(f, fps), c.event_times, tol) for (f, _), c in zip(out, order)]
        ceil = [event_f1(detect_visual_events(np.asarray(rt(c.frames, c.wave)[0]), fps), c.event_times, tol)
                for c in clips]
        results.append(_result("a2v_tones", "A2V", f1[:k], ceil[0]))
        results.append(_result("a2v_speech", "A2V", f1[k:], np.mean(ceil[1:])))
    return results


def format_controls(results: list[dict]) -> str:
    """One line per control: value (per seed), the real-through-codec value, threshold, PASS/FAIL."""
    lines = [f"{'control':15} {'job':5} {'value':>7}  {'per seed':22} {'real+codec':>10}  {'target':>8}  result  what"]
    for r in results:
        per = " ".join(f"{x:.2f}" for x in r["per_seed"])
        lines.append(f"{r['name']:15} {r['job']:5} {r['value']:7.2f}  {per:22} {r['ceiling']:10.2f}  "
                     f"{r['op'] + ' ' + format(r['threshold'], 'g'):>8}  {'PASS' if r['passed'] else 'FAIL':6}  "
                     f"{r['meaning']}")
        extras = {k: v for k, v in r.items() if k not in ("name", "job", "value", "per_seed", "ceiling", "threshold",
                                                          "op", "meaning", "passed")}
        if extras:
            lines.append(" " * 16 + "; ".join(f"{k} {v:.2f}" for k, v in extras.items()))
    return "\n".join(lines)
