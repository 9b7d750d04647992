"""Command line: ``python -m harmony {generate,bench,train,evaluate,convert}``."""
from __future__ import annotations

import argparse
import os
import sys
import time


def _generate(argv):
    from .pipeline import DEMO_CAPTION, DEMO_PROMPT, DEMO_TRANSCRIPT, HarmonyPipeline
    from .sampling import GUIDANCE_MODES, SOLVERS

    ap = argparse.ArgumentParser(prog="python -m harmony generate",
                                 description="Generate a synchronized audio-video clip (mp4).")
    ap.add_argument("prompt", nargs="?", default=None, help="what is seen (default: a demo prompt)")
    ap.add_argument("--caption", default=None, help="audio caption: what is heard")
    ap.add_argument("--transcript", default=None, help="speech transcript (syllables)")
    ap.add_argument("--image", help="first frame (I2AV): png/jpg")
    ap.add_argument("--audio", help="driving audio (A2V): wav/mp3/flac/mp4, any rate")
    ap.add_argument("--video", help="driving video (V2A): mp4 or other video file")
    ap.add_argument("--ref-voice", help="reference voice clip (timbre), 1-3 s")
    ap.add_argument("--seconds", type=float, default=None, help="clip length (default 3, or the driving clip's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--shift", type=float, default=5.0)
    ap.add_argument("--guidance", choices=GUIDANCE_MODES, default="synccfg")
    ap.add_argument("--sv", type=float, default=None, help="video guidance scale")
    ap.add_argument("--sa", type=float, default=None, help="audio guidance scale")
    ap.add_argument("--text-cfg", type=float, default=1.0, help="text CFG on top of SyncCFG (1 = off)")
    ap.add_argument("--solver", choices=SOLVERS, default="dpmpp_2m")
    ap.add_argument("--model", default=None, help="Harmony .safetensors (default: the bundled tiny model)")
    ap.add_argument("--dtype", default="auto", help="weight dtype: auto, bf16, fp16, fp32, fp8_e4m3fn, fp8_e5m2")
    ap.add_argument("--offload", default="none", choices=("none", "block_swap", "cpu"))
    ap.add_argument("--resident-blocks", type=int, default=None)
    ap.add_argument("-o", "--output", default="harmony.mp4", help="output mp4 path")
    a = ap.parse_args(argv)

    from tqdm import tqdm

    from . import media

    for flag, path in (("--image", a.image), ("--audio", a.audio), ("--video", a.video),
                       ("--ref-voice", a.ref_voice), ("--model", a.model)):
        if path is not None and not os.path.isfile(path):
            ap.error(f"{flag}: file not found: {path}")
    # no prompt: the demo clip, or (with driving media) an empty prompt that leaves it to the media
    demo = a.prompt is None and not (a.audio or a.video or a.image)
    prompt = a.prompt if a.prompt is not None else (DEMO_PROMPT if demo else "")
    caption = a.caption if a.caption is not None else (DEMO_CAPTION if demo else "")
    transcript = a.transcript if a.transcript is not None else (DEMO_TRANSCRIPT if demo else "")
    t0 = time.time()
    pipe = HarmonyPipeline.from_pretrained(a.model, dtype=a.dtype, offload=a.offload,
                                           resident_blocks=a.resident_blocks)
    defaults = pipe.model.cfg.meta.get("guidance", {}) if pipe.model.cfg.meta else {}
    sv = a.sv if a.sv is not None else float(defaults.get("sv", 3.0))
    sa = a.sa if a.sa is not None else float(defaults.get("sa", 2.0))
    kw = {}
    if a.image:
        kw["first_frame"] = media.read_image(a.image)
    if a.audio:
        kw["driving_audio"] = media.read_audio(a.audio)
    if a.video:
        frames, fps, _, _ = media.read_video(a.video)
        kw["driving_video"] = (frames, fps)
    if a.ref_voice:
        kw["ref_voice"] = media.read_audio(a.ref_voice)
    cond = pipe.encode_text(prompt, caption, transcript)
    bar = tqdm(total=a.steps, desc="sampling", unit="step")

    def progress(step, total):
        bar.total = total
        bar.update(step - bar.n)

    lat = pipe.sample(cond, seconds=a.seconds, seed=a.seed, steps=a.steps, shift=a.shift, sv=sv, sa=sa,
                      text_cfg=a.text_cfg, guidance=a.guidance, solver=a.solver, callback=progress, **kw)
    bar.close()
    frames, wave, sr, fps = pipe.decode(lat)
    if a.audio:  # A2V: the soundtrack is the driving audio itself
        wave_in, sr_in = kw["driving_audio"]
        wave = media.resample_audio(wave_in, sr_in, sr)[..., : wave.shape[-1]]
    if a.video:  # V2A: the picture is the driving video itself (at the model's fps and size)
        frames = pipe.conform_frames(*kw["driving_video"])[: frames.shape[0]]
    media.write_mp4(a.output, frames, fps, wave, sr)
    print(f"wrote {a.output}: {lat.job}, {frames.shape[0]} frames at {fps:g} fps, "
          f"{wave.shape[-1] / sr:.2f} s audio at {sr} Hz, prompt {prompt!r} ({time.time() - t0:.1f} s)")


def _bench(argv):
    from .bench import main
    main(argv)


def _train(argv):
    from .train import main
    main(argv)


def _evaluate(argv):
    from .evaluate import main
    main(argv)


def _convert(argv):
    ap = argparse.ArgumentParser(prog="python -m harmony convert",
                                 description="Convert a model file's weight format (safetensors to safetensors).")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--fp8", choices=("e4m3fn", "e5m2", "scaled_e4m3fn"), default=None)
    ap.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 for the non-fp8 weights")
    a = ap.parse_args(argv)
    from .checkpoint import convert
    convert(a.input, a.output, fp8=a.fp8, dtype=a.dtype)
    print(f"wrote {a.output}")


COMMANDS = {"generate": _generate, "bench": _bench, "train": _train, "evaluate": _evaluate,
            "convert": _convert}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        print("commands: " + ", ".join(COMMANDS))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}", file=sys.stderr)
            sys.exit(2)
        return
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
