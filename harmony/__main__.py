"""Command line: ``python -m harmony {generate,bench,train,encode-clips,evaluate,ablate,lab,convert}``.

Errors print one line and exit 2 (bad input) or 1 (anything else); add --debug
(or set HARMONY_DEBUG=1) to see the traceback."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import time


GENERATE_EXAMPLES = """\
The job follows from the inputs: none -> T2AV, --image -> I2AV, --audio -> A2V,
--video -> V2A. Without a prompt (and without media) a demo clip is made.
Pictures of another shape are fitted to the model's frame (--fit), and each
such change is printed once.

examples:
  {prog} generate "a small red ball bounces twice on the left. plain blue background." --caption "two high thuds." -o t2av.mp4
  {prog} generate --image first.png -o i2av.mp4
  {prog} generate --audio speech.wav -o a2v.mp4
  {prog} generate --video clip.mp4 -o v2a.mp4
"""


def generate_parser():
    from .cli import Parser, program
    from .media import FIT_MODES
    from .pipeline import MIN_SECONDS, model_limits
    from .sampling import DEFAULT_SOLVER, DEFAULT_STEPS, GUIDANCE_MODES, SOLVERS

    prog = program()
    try:
        bundled = f"{model_limits()[1]:g} s for the bundled model"
    except Exception:  # noqa: BLE001 - help must print even without the bundled model file
        bundled = "see MODEL_CARD.md"
    ap = Parser(prog=f"{prog} generate", epilog=GENERATE_EXAMPLES.format(prog=prog),
                description="Generate a synchronized audio-video clip (H.264 + AAC mp4) with a Harmony model.")
    ap.add_argument("prompt", nargs="?", default=None,
                    help="what is seen (and heard); default: a demo prompt, or empty with driving media")
    text = ap.add_argument_group("text")
    text.add_argument("--caption", default=None, help="audio caption: what is heard (default: the demo's, or empty)")
    text.add_argument("--transcript", default=None,
                      help="words to be spoken, as syllables, e.g. 'ba lo mi' (default: the demo's, or none)")
    inputs = ap.add_argument_group("media inputs (pick the job)")
    inputs.add_argument("--image", metavar="FILE", help="first frame (I2AV): png / jpg / webp")
    inputs.add_argument("--audio", metavar="FILE",
                        help="driving audio (A2V): wav / mp3 / flac / mp4, any rate; its sound is the clip's "
                             "soundtrack (mixed to mono)")
    inputs.add_argument("--video", metavar="FILE", help="driving video (V2A): mp4 / webm / mov ...; "
                                                        "its picture is the clip's picture")
    inputs.add_argument("--video-fps", type=float, default=None, metavar="FPS",
                        help="the driving video's real frame rate, for a file whose container gives none or an "
                             "implausible one (outside 1-240 fps); its timestamps are then ignored")
    inputs.add_argument("--ref-voice", metavar="FILE", help="reference voice (timbre of the generated voice), 1-3 s")
    inputs.add_argument("--plain-decode", action="store_true",
                        help="write both modalities as decoded from the latent; by default what you gave comes "
                             "back as given (--video's picture, --audio's sound, and --image's detail where the "
                             "frames still show it: harmony.codecs.keyframe)")
    inputs.add_argument("--fit", choices=FIT_MODES, default="crop",
                        help="how an image or video of another shape meets the model's frame: crop (centre), "
                             "letterbox (whole picture, black bars) or stretch (whole picture, distorted)")
    sampling = ap.add_argument_group("sampling")
    sampling.add_argument("--seconds", type=float, default=None, metavar="S",
                          help=f"clip length, at least {MIN_SECONDS:g} s and at most the model's limit "
                               f"({bundled}); default: 3, or the driving clip's length")
    sampling.add_argument("--seed", type=int, default=0, help="noise seed (same seed and settings: same clip)")
    sampling.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="sampling steps (the paper uses 40)")
    sampling.add_argument("--shift", type=float, default=None,
                          help="flow-matching schedule shift; default: the model's tuned value for the job (paper: 5)")
    sampling.add_argument("--guidance", choices=GUIDANCE_MODES, default="synccfg",
                          help="synccfg: against silent-audio / static-video anchors (the paper); cfg: plain "
                               "text CFG; none: no guidance")
    sampling.add_argument("--sv", type=float, default=None,
                          help="SyncCFG video scale; default: the model's tuned value for the job (paper: 3)")
    sampling.add_argument("--sa", type=float, default=None,
                          help="SyncCFG audio scale; default: the model's tuned value for the job (paper: 2)")
    sampling.add_argument("--st", type=float, default=None,
                          help="timing anchor on top of SyncCFG (A2V / V2A; ours, not the paper's): the generated "
                               "modality is pushed away from what a partner 3 frames early gives; default: the "
                               "model's tuned value for the job (0 = off)")
    sampling.add_argument("--resync", type=float, default=None, metavar="R",
                          help="resync pass (T2AV / I2AV; ours, not the paper's): the picture re-timed to the "
                               "generated sound, sampled again as A2V over the last R (0..1) of the schedule; "
                               "default: the model's tuned value for the job (0 = off)")
    sampling.add_argument("--text-cfg", type=float, default=1.0, help="text CFG on top of SyncCFG (1 = off)")
    sampling.add_argument("--video-negative", metavar="TEXT", default=None,
                          help="what text CFG (--text-cfg != 1, or --guidance cfg) steers the video away from "
                               "(default: Ovi's negative prompt for umT5 models, the empty text for the bundled one)")
    sampling.add_argument("--audio-negative", metavar="TEXT", default=None,
                          help="what text CFG steers the audio away from (default: Ovi's negative prompt for umT5 "
                               "models, the empty text for the bundled one)")
    sampling.add_argument("--solver", choices=SOLVERS, default=DEFAULT_SOLVER, help="ODE solver")
    model = ap.add_argument_group("model and memory")
    model.add_argument("--model", metavar="FILE", default=None,
                       help="Harmony .safetensors file, with its .text.safetensors beside it "
                            "(default: the bundled tiny model)")
    model.add_argument("--dtype", default="auto",
                       help="weight storage: auto (the file's), bf16, fp16, fp32, fp8_e4m3fn, fp8_e5m2")
    model.add_argument("--offload", default="none", choices=("none", "block_swap", "cpu"),
                       help="block_swap: keep --resident-blocks layers on the GPU, stream the rest; "
                            "cpu: all weights in RAM")
    model.add_argument("--resident-blocks", type=int, default=None, metavar="N",
                       help="with --offload block_swap: layers kept on the GPU (default: 0)")
    from . import components

    components.add_arguments(ap)
    ap.add_argument("-o", "--output", metavar="FILE", default="harmony.mp4", help="output mp4 path")
    ap.add_argument("--save-latents", metavar="FILE", default=None,
                    help="also write the sampled latents (video, audio; float32 safetensors) to FILE")
    return ap


def _say(msg: str):
    print(f"[harmony] {msg}", flush=True)


def _generate(argv):
    from .pipeline import DEMO_CAPTION, DEMO_PROMPT, DEMO_TRANSCRIPT, HarmonyPipeline

    ap = generate_parser()
    a = ap.parse_args(argv)

    from tqdm import tqdm

    from . import media

    from . import assemble, components, framesize

    try:  # --weights "" / --model "": an error, never the bundled model instead
        components.check_not_empty(a)
    except components.ComponentError as e:
        ap.error(str(e))
    real = components.wanted(a)
    size = None
    if real:  # the real-scale components: every file found (or a clear error) before anything loads
        try:
            paths = components.resolve(a)
            size = framesize.parse_size(a.size)
        except (components.ComponentError, ValueError) as e:
            ap.error(str(e))
        a.model = paths["model"]
    elif a.size is not None:  # never ignored: malformed, or meaningless for the bundled model
        try:
            framesize.parse_size(a.size)
        except ValueError as e:
            ap.error(str(e))
        ap.error(f"--size {a.size}: the frame size is chosen only for the real-scale stack (--weights DIR or the "
                 "component flags); the bundled model's frame size is fixed by its codecs. Drop --size, or give "
                 "--weights DIR")
    if a.audio and a.video:
        ap.error("--audio and --video: give one (driving audio makes A2V, driving video makes V2A)")
    if a.video_fps is not None and not a.video:
        ap.error(f"--video-fps {a.video_fps:g}: it is the frame rate of a driving video; give --video FILE too, "
                 "or drop --video-fps")
    for flag, path in (("--image", a.image), ("--audio", a.audio), ("--video", a.video),
                       ("--ref-voice", a.ref_voice), ("--model", a.model)):
        if path is not None and not os.path.isfile(path):
            ap.error(f"{flag}: file not found: {path}")
    limit = _check_generate_args(a)  # before the model is loaded or anything is sampled
    from . import parallel

    sp = parallel.init_from_environment()  # under torchrun: the video tokens split across the processes
    if sp is not None and sp.rank:  # rank 0 speaks and writes the clip; the others compute with it
        sys.stdout = open(os.devnull, "w")
    if real:  # the size against the device's memory, by the memory plan, before anything loads
        try:
            framesize.check_size_fits(size, limit)
        except ValueError as e:
            ap.error(str(e))
    # no prompt: the demo clip, or (with driving media) an empty prompt that leaves it to the media
    demo = a.prompt is None and not (a.audio or a.video or a.image)
    prompt = a.prompt if a.prompt is not None else (DEMO_PROMPT if demo else "")
    caption = a.caption if a.caption is not None else (DEMO_CAPTION if demo else "")
    transcript = a.transcript if a.transcript is not None else (DEMO_TRANSCRIPT if demo else "")
    t0 = time.time()
    if real:
        pipe = assemble.load_stack(paths, dtype=a.dtype, offload=a.offload, resident_blocks=a.resident_blocks,
                                size=a.size, caption_tags=a.caption_tags, log=_say)
    else:
        pipe = HarmonyPipeline.from_pretrained(a.model, dtype=a.dtype, offload=a.offload,
                                               resident_blocks=a.resident_blocks)
    if sp is not None:
        parallel.apply(pipe.model, sp)  # checks the head count before any compute
        _say(f"sequence parallel over {sp.world} processes ({pipe.device})")
    sv, sa = a.sv, a.sa  # None: the model file's tuned scales for the job (pipe.sample reads them)
    kw = {}
    if a.image:
        kw["first_frame"] = media.read_image(a.image)  # fitted to the frame by pipe.sample(fit=...)
    # driving media: only the part that can be used is decoded (a long file is never read in full)
    if a.audio:
        kw["driving_audio"] = _read_limited(media.read_audio, a.audio, "--audio", limit)
    if a.video:
        frames, fps, _, _ = _read_limited(media.read_video, a.video, "--video", limit, fps=a.video_fps)
        # conformed once here (messages once): sampled from it, and shown as the clip's picture;
        # never more frames than the run can use, whatever the rates
        kw["driving_video"] = (pipe.conform_frames(frames, fps, "--video", a.fit,
                                                   max_frames=math.ceil(limit * pipe.fps) + 1), pipe.fps)
    if a.ref_voice:
        kw["ref_voice"] = _read_limited(media.read_audio, a.ref_voice, "--ref-voice", limit)
    cond = pipe.encode_text(prompt, caption, transcript)
    bar = tqdm(total=a.steps, desc="sampling", unit="step", disable=sp is not None and sp.rank > 0)

    def progress(step, total):
        bar.total = total
        bar.update(step - bar.n)

    try:  # closed on an error too: its line ends before the error line, and it is never redrawn after it
        lat = pipe.sample(cond, seconds=a.seconds, seed=a.seed, steps=a.steps, shift=a.shift, sv=sv, sa=sa,
                          st=a.st, resync=a.resync, text_cfg=a.text_cfg, guidance=a.guidance, solver=a.solver,
                          callback=progress, fit=a.fit, video_negative=a.video_negative,
                          audio_negative=a.audio_negative, **kw)
    finally:
        bar.close()
    if sp is not None and sp.rank:
        return
    if a.save_latents:
        from safetensors.torch import save_file

        _check_output(a.save_latents, "--save-latents")
        save_file({"video": lat.video.contiguous().cpu(), "audio": lat.audio.contiguous().cpu()}, a.save_latents)
    # A2V's soundtrack is the driving audio, V2A's picture the driving video (at the model's rate and
    # size), unless --plain-decode
    frames, wave, sr, fps = pipe.decode(lat, keep_given=not a.plain_decode)
    if a.audio and not a.plain_decode and kw["driving_audio"][0].shape[0] > 1:
        _say(f"--audio: {kw['driving_audio'][0].shape[0]} channels mixed to mono for the soundtrack "
             "(the model's sound is mono)")
    _check_output(a.output, "-o")  # again: the path may have changed while sampling
    media.write_mp4(a.output, frames, fps, wave, sr)
    print(f"wrote {a.output}: {lat.job}, {frames.shape[0]} frames at {fps:g} fps, "
          f"{wave.shape[-1] / sr:.2f} s audio at {sr} Hz, prompt {prompt!r} ({time.time() - t0:.1f} s)")


def _check_output(path, name):
    """An output path that may be written: absent or a regular file in a writable folder."""
    from . import validate

    return validate.output_path(path, name)


def _check_generate_args(a) -> float:
    """Every number and path of ``generate``, checked before loading the model; returns the
    longest span of driving media that can be used (seconds)."""
    from . import validate
    from .pipeline import model_limits
    from .sampling import GUIDANCE_MODES, SOLVERS

    _check_output(a.output, "-o")
    if a.save_latents is not None:
        _check_output(a.save_latents, "--save-latents")
    min_s, max_s = model_limits(a.model, "--model" if a.model else "the bundled model")
    validate.sampling_args(seconds_value=a.seconds, seed=a.seed, steps=a.steps, shift=a.shift,
                           sv=0.0 if a.sv is None else a.sv, sa=0.0 if a.sa is None else a.sa,
                           st=a.st, resync=a.resync, text_cfg=a.text_cfg, guidance=a.guidance, solver=a.solver,
                           min_seconds=min_s, max_seconds=max_s, guidance_modes=GUIDANCE_MODES, solvers=SOLVERS,
                           via="cli")
    if a.resident_blocks is not None:
        validate.integer(a.resident_blocks, "resident_blocks", 4, via="cli", low=0)
    if a.video:  # the container's frame rate (or --video-fps), before anything is decoded or loaded
        from .media import probe

        if a.video_fps is not None:
            validate.frame_rate(a.video_fps, "--video-fps", via="cli",
                                todo="give the clip's real frame rate, e.g. --video-fps 24")
        else:
            info = probe(a.video)
            if info["video"] is not None:  # no video stream: read_video says so
                validate.frame_rate(info["video"]["fps"], f"--video {a.video}", via="cli",
                                    missing="its container gives none",
                                    todo=f"re-encode the file at its real rate (e.g. ffmpeg -i {a.video} -r 24 "
                                         "fixed.mp4) or give that rate with --video-fps 24")
    return min(a.seconds, max_s) if a.seconds is not None else max_s


def _read_limited(read, path, flag, limit, **kw):
    """Read at most ``limit`` seconds of a media file, and say when the file is longer."""
    got = read(path, max_seconds=limit, **kw)
    data, rate = got[0], got[1]  # (wave [C, T], sr) or (frames [F, H, W, 3], fps, ...)
    n = data.shape[-1] if data.ndim == 2 else data.shape[0]
    if n >= int(limit * rate):
        print(f"[harmony] {flag}: using the first {limit:g} s of {path} (the most this run can use)",
              flush=True)
    return got


def _bench(argv):
    from .bench import main
    main(argv)


def _train(argv):
    from .train import main
    main(argv)


def _evaluate(argv):
    from .evaluate import main
    main(argv)


def _encode_clips(argv):
    from .clips import main
    main(argv)


def _ablate(argv):
    from .ablate import main
    main(argv)


def _lab(argv):
    from .lab import main
    main(argv)


def _convert(argv):
    from .cli import Parser, program

    ap = Parser(prog=f"{program()} convert",
                description="Convert a model file's weight format (safetensors to safetensors).",
                epilog=f"example:\n  {program()} convert model.safetensors model_fp8.safetensors --fp8 scaled_e4m3fn")
    ap.add_argument("input", help="Harmony model file (.safetensors)")
    ap.add_argument("output", help="file to write (.safetensors)")
    ap.add_argument("--fp8", choices=("e4m3fn", "e5m2", "scaled_e4m3fn"), default=None,
                    help="store the transformer blocks' linear weights in fp8; scaled_e4m3fn adds one scale "
                         "per weight (ComfyUI's scaled-fp8 format); default: no fp8")
    ap.add_argument("--dtype", default=None,
                    help="bf16, fp16 or fp32 for the non-fp8 weights; default: keep the file's")
    a = ap.parse_args(argv)
    _check_output(a.output, "output")
    from .checkpoint import convert
    convert(a.input, a.output, fp8=a.fp8, dtype=a.dtype)
    print(f"wrote {a.output}")


def _job_weights(argv):
    from .cli import Parser, program
    from .jobs import JOBS, TUNED_KEYS

    ap = Parser(prog=f"{program()} job-weights",
                description="Add jobs' own weights (fine-tuned copies of a few tensors, used only while that job "
                            "samples; harmony.job_weights) and their tuned sampling settings to a model file. The "
                            "other jobs keep the shared weights bit for bit.",
                epilog=f"example:\n  {program()} job-weights shared.safetensors out.safetensors "
                       "--job V2A=runs/v2a/harmony_tiny.safetensors --only 'audio_model\\.blocks\\.'")
    ap.add_argument("shared", help="model file with the shared weights (.safetensors, .text.safetensors beside it)")
    ap.add_argument("output", help="file to write (.safetensors); the shared .text.safetensors is written beside it")
    ap.add_argument("--job", action="append", default=[], metavar="JOB=FILE",
                    help=f"a job ({', '.join(JOBS)}) and its fine-tuned export; repeat for several jobs")
    ap.add_argument("--tuned", action="append", default=[], metavar="JOB:KEY=X[,KEY=Y]",
                    help=f"sampling settings tuned for a job ({', '.join(TUNED_KEYS)}), recorded in the file: "
                         "sampling that does not set one uses the job's (e.g. I2AV:sv=2, A2V:shift=1); "
                         "repeat for several jobs")
    ap.add_argument("--codecs", default=None, metavar="FILE",
                    help="pin this codec file instead of the one the model was trained with (which must be installed "
                         "where the pipeline reads it): allowed only for a stand-in, whose video encoder gives the "
                         "world's held-out frames the same latents (harmony.codecs.tiny.latent_shift)")
    ap.add_argument("--jobs-from", default=None, metavar="FILE",
                    help="copy the job tensors of this model file (written by job-weights) as they are, for the jobs "
                         "no --job names: after a move to a new codec, the jobs' own weights start where they were")
    ap.add_argument("--only", action="append", default=[], metavar="[JOB=]REGEX",
                    help="regular expression of the tensors the fine-tunes trained (their train --trainable); "
                         "JOB=REGEX for one job (repeat, e.g. V2A='audio_model\\.blocks\\.' "
                         "I2AV='video_model\\.blocks\\.'); default: every tensor that differs from the shared file "
                         "(frozen tensors come out of train's export bit for bit)")
    a = ap.parse_args(argv)
    only = {}
    for item in a.only:
        job, sep, regex = item.partition("=")
        job, regex = (job, regex) if sep and job in JOBS else ("", item)
        if job in only or not regex:
            ap.error(f"--only {item!r}: give one REGEX for every job or JOB=REGEX once per job "
                     f"(JOB one of {', '.join(JOBS)})")
        try:
            re.compile(regex)
        except re.error as e:
            ap.error(f"--only {item!r}: not a regular expression ({e})")
        only[job] = regex
    jobs = {}
    for item in a.job:
        job, sep, path = item.partition("=")
        if not sep or job not in JOBS or not path:
            ap.error(f"--job {item!r}: give JOB=FILE with JOB one of {', '.join(JOBS)}")
        jobs[job] = path
    tuned = {}
    for item in a.tuned:
        job, sep, rest = item.partition(":")
        pairs = [p.partition("=") for p in rest.split(",")] if sep else []
        try:
            values = {k.strip(): float(v) for k, eq, v in pairs if eq}
        except ValueError:
            values = {}
        if (job not in JOBS or not values or len(values) != len(pairs) or set(values) - set(TUNED_KEYS)
                or any(not 0 <= v < float("inf") for v in values.values()) or values.get("shift", 1) <= 0
                or values.get("resync", 0) > 1):
            ap.error(f"--tuned {item!r}: give JOB:KEY=X[,KEY=Y] with JOB one of {', '.join(JOBS)}, KEY one of "
                     f"{', '.join(TUNED_KEYS)}, scales >= 0, a shift > 0 and a resync in [0, 1], e.g. A2V:shift=1")
        tuned[job] = values
    if not jobs and not tuned and not a.codecs and not a.jobs_from:
        ap.error("give at least one --job JOB=FILE, --jobs-from FILE, --tuned JOB:KEY=X or --codecs FILE")
    _check_output(a.output, "output")
    from .checkpoint import write_job_file
    codecs = _stand_in_codecs(a.shared, a.codecs) if a.codecs else None
    counts = write_job_file(a.shared, a.output, jobs, only, tuned, codecs, a.jobs_from)
    print(f"wrote {a.output}: " + ", ".join([f"{j} {n} tensors" for j, n in counts.items()]
                                            + [f"{j} tuned {v}" for j, v in tuned.items()]
                                            + ([f"codecs {codecs['sha256'][:12]}… (latent shift "
                                                f"{codecs['latent_shift']:.3f} std)"] if codecs else [])))


def _stand_in_codecs(shared: str, candidate: str) -> dict:
    """The codec pin for ``job-weights --codecs``: refused unless ``candidate`` is a stand-in for
    the codec file ``shared`` was trained with (installed where the pipeline reads it)."""
    from .checkpoint import read_config
    from .codecs.tiny import COMPATIBLE_LATENT_SHIFT, DEFAULT_CODECS_PATH, latent_shift
    from .files import sha256_file

    if not os.path.isfile(candidate):
        raise SystemExit(f"--codecs {candidate!r}: no such file")
    want = (read_config(shared).meta or {}).get("codecs_sha256")
    if not want or not os.path.isfile(DEFAULT_CODECS_PATH) or sha256_file(DEFAULT_CODECS_PATH) != want:
        raise SystemExit(f"--codecs: {shared!r} pins no codec file, or {DEFAULT_CODECS_PATH!r} is not the one it "
                         "pins; install the model's own codec file there first, to compare the stand-in with it")
    shift = latent_shift(DEFAULT_CODECS_PATH, candidate)
    if not shift <= COMPATIBLE_LATENT_SHIFT:
        raise SystemExit(f"--codecs {candidate!r}: its video latents of held-out world frames are {shift:.3f} "
                         f"latent std from the model's codec (at most {COMPATIBLE_LATENT_SHIFT} for a stand-in); "
                         "the model would need retraining with it")
    return {"sha256": sha256_file(candidate), "from": want, "latent_shift": round(shift, 4)}


COMMANDS = {"generate": _generate, "bench": _bench, "train": _train, "evaluate": _evaluate,
            "ablate": _ablate, "lab": _lab, "convert": _convert, "encode-clips": _encode_clips,
            "job-weights": _job_weights}


OVERVIEW = """\
usage: {prog} <command> [options]
       {prog} <command> --help      (the command's options and their defaults)

Harmony: synchronized audio and video generation (arXiv 2511.21579). The bundled
tiny model runs on a CPU with no download; see MODEL_CARD.md for what it can do.

commands:
  generate   make a clip (mp4); the job follows from the inputs: T2AV, I2AV, A2V, V2A
  bench      seconds per sampling step and peak memory, per precision and guidance
  train      Cross-Task Synergy training of a small model on the synthetic world
  encode-clips  encode a folder of real clips (mp4 + sidecar) into a latent cache for train --clip-cache
  evaluate   held-out synchronization table of a model (SyncCFG vs plain CFG)
  ablate     the paper's ablation at toy scale: variants x seeds, table and drift plot
  lab        one short CPU experiment with its partner-use curve (docs/training/experiments.md)
  convert    change a model file's weight format (fp8, scaled fp8, bf16, ...)
  job-weights  add a job's own fine-tuned weights to a model file (used only while that job samples)

examples:
  T2AV  {prog} generate "a small red ball bounces twice on the left. plain blue background." --caption "two high thuds."
  I2AV  {prog} generate --image first.png -o i2av.mp4
  A2V   {prog} generate --audio speech.wav -o a2v.mp4
  V2A   {prog} generate --video clip.mp4 -o v2a.mp4
        {prog} bench --quick
        {prog} train --steps 3000 --out runs/tiny
        {prog} evaluate -n 2 --jobs T2AV,V2A
        {prog} ablate --out runs/ablation
        {prog} convert model.safetensors model_fp8.safetensors --fp8 scaled_e4m3fn

An error prints one line; add --debug to see the traceback.
"""


def _dispatch(argv):
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        from .cli import program

        print(OVERVIEW.format(prog=program()).rstrip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}", file=sys.stderr)
            sys.exit(2)
        return
    COMMANDS[argv[0]](argv[1:])


@contextlib.contextmanager
def _one_line_usage_errors():
    """argparse's usage errors as one line (not the whole usage block), exit code 2."""
    def error(parser, message):
        if "invalid int value" in message:
            message += " (give a whole number)"
        elif "invalid float value" in message:
            message += " (give a number)"
        parser.exit(2, f"{parser.prog}: error: {message}; see {parser.prog} --help\n")

    saved = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = saved


def _is_input_error(e: BaseException) -> bool:
    """Bad input (exit 2): our validation, media and checkpoint errors are ValueErrors."""
    return isinstance(e, (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError))


def _close_progress_bars():
    """Close every progress bar still open (any command's, any module's) before an error line is
    printed: the bar's line is ended first, so the error never lands on it, and a bar closed here
    is not redrawn below the error when it is garbage-collected at exit."""
    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    for bar in list(getattr(std.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot be closed must not hide the error
            pass
    sys.stdout.flush()


def main(argv=None):
    """Run a command; an error prints one line (``--debug`` / HARMONY_DEBUG=1: the traceback)
    and exits 2 for bad input, 1 for anything else."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HARMONY_DEBUG", "").strip() not in ("", "0")
    argv = [x for x in argv if x != "--debug"]
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        with _one_line_usage_errors():
            _dispatch(argv)
    except KeyboardInterrupt:
        _close_progress_bars()
        if debug:
            raise
        print("harmony: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - every error becomes one line (or a traceback with --debug)
        code = 2 if _is_input_error(e) else 1
        _close_progress_bars()
        if debug:
            import traceback

            traceback.print_exc()
            sys.exit(code)
        text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        if code == 1:
            text = f"{type(e).__name__}: {text} (rerun with --debug for the traceback)"
        from .cli import program

        print(f"{program()}{' ' + command if command else ''}: error: {text}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    main()
