"""Input-following controls for a Harmony model on decoded media (issue 10).

Each job gets inputs that must change the output in a known way:

* **V2A**: a static video (white square on black, never changes) -> (almost) no
  loud audio onsets; the same square flashing at known times -> audio onsets at
  those times (event F1, 1 frame tolerance); the two outputs at the same seed
  must differ (loudness-envelope correlation low).
* **I2AV**: held-out world clips' first frames with their prompts -> frames
  1..N stay close to the given frame: mean PSNR of frames 1..N against it
  (``persist``), next to the codec's own round trip of the image (frame 0) and to
  the real clip's frames 1..N against its own first frame (how much a scene moves).
* **A2V**: tone bursts at known times and a held-out world speech clip -> visual
  event onsets at the driving audio's onsets (event F1 against the known times /
  the clip's ground-truth syllable events, 1 frame tolerance).

    python scripts/job_controls.py [--model FILE] [--seeds 0 1 2] [--steps 20]

SyncCFG with the model's default scales. Prints one line per measurement and a
summary; seeds are noise seeds (the inputs are fixed or held-out world clips).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony import metrics, world  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402

FPS, SR, SECONDS = 16, 16000, 3.0
FLASH_TIMES = (0.5, 1.0, 1.5, 2.0, 2.5)
TONE_TIMES = (0.5, 1.125, 1.75, 2.375)
PROMPT_V2A = "a white lamp flashes in the middle. in front of a plain black wall."
CAPTION_V2A = "a lamp clicks."


def square_video(flash: bool) -> np.ndarray:
    n = int(SECONDS * FPS)
    frames = np.zeros((n, 64, 64, 3), np.float32)
    frames[:, 24:40, 24:40] = 0.35  # a dim square always there
    if flash:
        for t in FLASH_TIMES:
            k = int(round(t * FPS))
            frames[k:k + 2, 24:40, 24:40] = 1.0  # lit for 2 frames
    return frames


def tone_bursts() -> np.ndarray:
    t = np.arange(int(SECONDS * SR)) / SR
    wave = np.zeros_like(t)
    for t0 in TONE_TIMES:
        m = (t >= t0) & (t < t0 + 0.12)
        wave[m] = 0.5 * np.sin(2 * np.pi * 660 * t[m]) * np.exp(-(t[m] - t0) / 0.05)
    return wave.astype(np.float32)


def generate(pipe, prompt, caption="", transcript="", seed=0, steps=20, **job):
    cond = pipe.encode_text(prompt, caption, transcript)
    lat = pipe.sample(cond, seconds=SECONDS, seed=seed, steps=steps, **job)
    frames, wave, sr, fps = pipe.decode(lat)
    return frames.numpy(), wave.numpy()[0]


def tol():
    return 1.0 / FPS


def v2a(pipe, seeds, steps):
    out = []
    static, flashing = square_video(False), square_video(True)
    for s in seeds:
        _, w_static = generate(pipe, PROMPT_V2A, CAPTION_V2A, seed=s, steps=steps, driving_video=(static, FPS))
        _, w_flash = generate(pipe, PROMPT_V2A, CAPTION_V2A, seed=s, steps=steps, driving_video=(flashing, FPS))
        n_static = len(metrics.loud_onsets(w_static, SR, FPS))
        on_flash = metrics.loud_onsets(w_flash, SR, FPS)
        prf = metrics.event_prf(on_flash, FLASH_TIMES, tol())
        corr = metrics.envelope_correlation(w_static, w_flash, SR, FPS)
        print(f"V2A seed {s}: static video -> {n_static} loud onsets; flashing -> {len(on_flash)} onsets "
              f"{np.round(on_flash, 3).tolist()} F1 {prf['f1']:.2f} vs flashes {list(FLASH_TIMES)}; "
              f"envelope corr static/flashing {corr:.2f}", flush=True)
        out.append((n_static, prf["f1"], corr))
    a = np.array(out)
    print(f"V2A summary: static onsets mean {a[:, 0].mean():.2f}; flashing F1 mean {a[:, 1].mean():.2f}; "
          f"static/flashing envelope corr mean {a[:, 2].mean():.2f}", flush=True)
    return a


def i2av(pipe, seeds, steps, n_clips):
    rows = []
    clips = [world.render(world.sample_scene(sd, split, SECONDS))
             for split in world.SPLITS for sd in world.heldout_seeds(split, n_clips)]
    for c in clips:
        img = c.frames[0]
        with torch.no_grad():
            rt = pipe.codecs.video.decode(pipe.codecs.video.encode(torch.from_numpy(img)[None, None]))[0, 0].numpy()
        codec_db = metrics.psnr(rt, img)
        real = metrics.first_frame_similarity(c.frames, img)["persist_psnr_db"]
        for s in seeds:
            frames, _ = generate(pipe, c.prompt, c.audio_caption, c.transcript, seed=s, steps=steps, first_frame=img)
            sim = metrics.first_frame_similarity(frames, img)
            print(f"I2AV {c.scene.split} seed {s}: frame0 {sim['ff_psnr_db']:.1f} dB (codec round trip "
                  f"{codec_db:.1f}); frames1.. persist {sim['persist_psnr_db']:.1f} dB, worst {sim['cut_psnr_db']:.1f} "
                  f"(real clip's own frames1.. vs its frame0: {real:.1f})", flush=True)
            rows.append((sim["ff_psnr_db"], codec_db, sim["persist_psnr_db"], sim["cut_psnr_db"], real))
    a = np.array(rows)
    print(f"I2AV summary: frame0 {a[:, 0].mean():.1f} dB vs codec {a[:, 1].mean():.1f}; persist "
          f"{a[:, 2].mean():.1f} dB (worst frame mean {a[:, 3].mean():.1f}) vs real clips' {a[:, 4].mean():.1f}",
          flush=True)
    return a


def a2v(pipe, seeds, steps):
    rows = []
    tones = tone_bursts()
    speech = world.render(world.sample_scene(world.heldout_seeds("speech", 1)[0], "speech", SECONDS))
    speech_times = [t for t, kind, _ in speech.events]
    cases = [("tones", tones, list(TONE_TIMES), "a large face in the middle. in front of a plain gray wall.", "", ""),
             ("speech", speech.wave, speech_times, speech.prompt, speech.audio_caption, speech.transcript)]
    for name, wave, times, prompt, cap, tr in cases:
        for s in seeds:
            frames, _ = generate(pipe, prompt, cap, tr, seed=s, steps=steps, driving_audio=(wave[None], SR))
            vis = metrics.detect_visual_events(frames, FPS)
            prf = metrics.event_prf(vis, times, tol())
            print(f"A2V {name} seed {s}: visual onsets {np.round(vis, 3).tolist()} vs audio onsets "
                  f"{np.round(times, 3).tolist()}: F1 {prf['f1']:.2f}", flush=True)
            rows.append((name, prf["f1"]))
    for name in ("tones", "speech"):
        f = [r[1] for r in rows if r[0] == name]
        print(f"A2V summary {name}: F1 mean {np.mean(f):.2f}", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--clips", type=int, default=1, help="I2AV held-out clips per split")
    ap.add_argument("--jobs", nargs="+", default=["V2A", "I2AV", "A2V"])
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    pipe = HarmonyPipeline.from_pretrained(args.model, dtype="fp32", device="cpu", log=lambda m: None)
    print(f"model: {args.model or 'bundled'}; noise seeds {args.seeds}; {args.steps} steps, SyncCFG", flush=True)
    if "V2A" in args.jobs:
        v2a(pipe, args.seeds, args.steps)
    if "I2AV" in args.jobs:
        i2av(pipe, args.seeds, args.steps, args.clips)
    if "A2V" in args.jobs:
        a2v(pipe, args.seeds, args.steps)


if __name__ == "__main__":
    main()
