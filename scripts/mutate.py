"""Mutation check of the sampling, guidance and training maths.

Applies one-line mutations, one at a time, to a temporary copy of the repository
(never the working tree: the files ``git ls-files`` lists plus everything under
``harmony/`` and ``tests/``, as they are in the working tree now), runs the fast
tests that should notice, and exits non-zero if any mutation survives (the tests
still pass) or no longer applies (its line is gone: update the list).

    python scripts/mutate.py            # all mutations
    python scripts/mutate.py -k cfg     # those whose name contains "cfg"
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAMPLING_TESTS = ["tests/test_sampling.py", "tests/test_guidance.py"]
GUIDANCE_TESTS = ["tests/test_guidance.py", "tests/test_sampling.py"]  # the likelier killer first (-x)
TRAIN_TESTS = ["tests/test_train.py::test_cross_task_losses_by_construction",
               "tests/test_train.py::test_training_sigmas_are_shifted"]
REFERENCE_TESTS = ["tests/test_interaction_values.py"]
TRAIN_STATS_TESTS = ["tests/test_train_stats.py"]
MEDIA_TESTS = ["tests/test_media_rates.py"]
DEFAULTS_TESTS = ["tests/test_defaults.py"]
JOB_TESTS = ["tests/test_job_weights.py"]
CODEC_TESTS = ["tests/test_codecs.py::test_decoder_holds_a_pitch_that_falls_to_a_subharmonic_inside_a_sound",
               "tests/test_codecs.py::test_decoder_lets_a_new_sound_or_a_voiced_start_change_the_pitch",
               "tests/test_codecs.py::test_a_decaying_chime_keeps_one_onset_per_strike"]
KEYFRAME_TESTS = ["tests/test_keyframe.py"]
RESYNC_TESTS = ["tests/test_sampling.py::test_resync_pass_resamples_the_video_as_a2v_from_its_own_audio",
                "tests/test_sampling.py::test_resync_setting_is_read_from_the_model_file_for_t2av_and_i2av_only"]
COLOUR_TESTS = ["tests/test_train_tasks.py::test_colour_weight_weighs_the_coloured_patches_in_the_video_loss",
                "tests/test_train_tasks.py::test_colour_share_is_each_latent_patchs_share_of_world_colour_pixels"]
TEMPORAL_TESTS = ["tests/test_train_tasks.py::test_temporal_term_weighs_the_estimates_frame_to_frame_change",
                  "tests/test_train_tasks.py::test_temporal_term_reads_a_velocity_network_through_its_clean_estimate"]
TUNED_TESTS = ["tests/test_pipeline.py::test_a_job_without_settings_samples_at_the_model_files_settings_for_that_job"]

# (name, file, exact old line (without indentation), new line, tests to run)
MUTATIONS = [
    ("DPM++(2M) correction sign flipped", "harmony/sampling.py",
     "d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised",
     "d = (1 - 1 / (2 * r)) * denoised + (1 / (2 * r)) * old_denoised", SAMPLING_TESTS),
    ("DPM++(2M) without the second-order correction", "harmony/sampling.py",
     "d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised",
     "d = denoised", SAMPLING_TESTS),
    ("DPM++(2M) exponential factor wrong sign", "harmony/sampling.py",
     "x = (sigma_next / s) * x - (1 - sigma_next) * math.expm1(-h) * d",
     "x = (sigma_next / s) * x - (1 - sigma_next) * math.expm1(h) * d", SAMPLING_TESTS),
    ("velocity->x0 sign flipped", "harmony/guidance.py",
     "return z - sigma * out", "return z + sigma * out", GUIDANCE_TESTS),
    ("plain-CFG direction reversed (video)", "harmony/guidance.py",
     'dv = x0v["uncond"] + g.sv * (x0v["joint"] - x0v["uncond"])',
     'dv = x0v["joint"] + g.sv * (x0v["uncond"] - x0v["joint"])', GUIDANCE_TESTS),
    ("plain-CFG direction reversed (audio)", "harmony/guidance.py",
     'da = x0a["uncond"] + g.sa * (x0a["joint"] - x0a["uncond"])',
     'da = x0a["uncond"] - g.sa * (x0a["joint"] - x0a["uncond"])', GUIDANCE_TESTS),
    ("text CFG on top with the wrong sign", "harmony/guidance.py",
     'dv = dv + (g.text_cfg - 1) * (x0v["joint"] - x0v["uncond"])',
     'dv = dv - (g.text_cfg - 1) * (x0v["joint"] - x0v["uncond"])', GUIDANCE_TESTS),
    ("silent-audio anchor fed at the noisy timestep", "harmony/guidance.py",
     'out.append(("silent", zv, self.silent_audio(za), sigma_v, zero_a, self.cond))',
     'out.append(("silent", zv, self.silent_audio(za), sigma_v, sigma_a, self.cond))', GUIDANCE_TESTS),
    ("static-video anchor fed at the noisy timestep", "harmony/guidance.py",
     'out.append(("static", self.static_video(zv), za, zero_v, sigma_a, self.cond))',
     'out.append(("static", self.static_video(zv), za, sigma_v, sigma_a, self.cond))', GUIDANCE_TESTS),
    ("SyncCFG video scale uses sa (sv/sa swapped)", "harmony/guidance.py",
     'dv = x0v["silent"] + g.sv * (x0v["joint"] - x0v["silent"])',
     'dv = x0v["silent"] + g.sa * (x0v["joint"] - x0v["silent"])', GUIDANCE_TESTS),
    ("SyncCFG audio scale uses sv (sv/sa swapped)", "harmony/guidance.py",
     'da = x0a["static"] + g.sa * (x0a["joint"] - x0a["static"])',
     'da = x0a["static"] + g.sv * (x0a["joint"] - x0a["static"])', GUIDANCE_TESTS),
    ("default scales swapped", "harmony/guidance.py",
     "DEFAULT_SV = 3.0", "DEFAULT_SV = 2.0", GUIDANCE_TESTS),
    ("timesteps given to the network in its (bf16) dtype", "harmony/guidance.py",
     "v, a = self.model(zv.to(dt), za.to(dt), (sigma_v * 1000).float(), (sigma_a * 1000).float(), cond)",
     "v, a = self.model(zv.to(dt), za.to(dt), (sigma_v * 1000).to(dt), (sigma_a * 1000).to(dt), cond)",
     GUIDANCE_TESTS),
    ("ODE state kept in the noise's dtype", "harmony/sampling.py",
     "state = torch.promote_types(noise_video.dtype, torch.float32)",
     "state = noise_video.dtype", SAMPLING_TESTS),
    ("shift dropped from the schedule", "harmony/sampling.py",
     "return shift * sigmas / (1 + (shift - 1) * sigmas)", "return sigmas",
     SAMPLING_TESTS + ["tests/test_train.py::test_training_sigmas_are_shifted"]),
    ("wrong Euler step ratio", "harmony/sampling.py",
     "x = denoised + (sigma_next / sigma) * (x - denoised)",
     "x = denoised + (sigma_next / sigma) ** 0.5 * (x - denoised)", SAMPLING_TESTS),
    ("I2AV first frame at the noisy timestep", "harmony/sampling.py",
     "sigma_v[:, 0] = 0", "sigma_v[:, 0] = sigma", SAMPLING_TESTS),
    ("A2V audio not held clean", "harmony/sampling.py",
     "za = job.clean_audio.to(za)", "za = za", SAMPLING_TESTS),
    ("A2V loss on the clean modality (audio)", "harmony/train.py",
     'losses["a2v"] = lv', 'losses["a2v"] = la', TRAIN_TESTS),
    ("V2A loss on the clean modality (video)", "harmony/train.py",
     'losses["v2a"] = la', 'losses["v2a"] = lv', TRAIN_TESTS),
    ("clean first frame counted in the video loss", "harmony/train.py",
     "noisy_frames = (t_video > 0).float()[:, None, :, None, None].expand_as(target)",
     "noisy_frames = (t_video >= 0).float()[:, None, :, None, None].expand_as(target)", TRAIN_TESTS),
    ("A2V audio not clean in training", "harmony/train.py",
     "sigma_a.zero_()", "sigma_a.mul_(0.5)", TRAIN_TESTS),
    ("A2V/V2A weights swapped", "harmony/train_config.py",
     "lambda_v: float = 0.1  # weight of the audio-driven video (A2V) loss",
     "lambda_v: float = 0.3  # weight of the audio-driven video (A2V) loss", TRAIN_TESTS),
    ("per-task shifts ignored (one driven shift for all)", "harmony/train.py",
     'shift = getattr(tc, "shift_" + task) or tc.driven_shift', "shift = tc.driven_shift",
     ["tests/test_train_tasks.py"]),
    ("teacher term left out of the total", "harmony/train.py",
     "+ tc.lambda_distill * losses.get(\"distill\", 0))", "+ 0 * losses.get(\"distill\", 0))",
     ["tests/test_train.py::test_distillation_tethers_the_joint_rows_to_the_teacher"]),
    ("teacher fed the last task's rows instead of the joint rows", "harmony/train.py",
     "tv, ta = t_model(zv_list[0], za_list[0], tv_list[0], ta_list[0],",
     "tv, ta = t_model(zv_list[-1], za_list[-1], tv_list[-1], ta_list[-1],",
     ["tests/test_train.py::test_distillation_tethers_the_joint_rows_to_the_teacher"]),
    ("quiet share ignored by the world's batches", "harmony/world/render.py",
     "is_quiet = np.array([is_quiet_seed(s, p_quiet) for s in seeds], bool)",
     "is_quiet = np.zeros(len(seeds), bool)",
     ["tests/test_world.py::test_sample_batch_mixes_quiet_scenes_by_seed"]),
    ("teacher scores the quiet clips too", "harmony/train.py",
     'taught = ~batch["quiet"].to(device) if "quiet" in batch else torch.ones(b, dtype=torch.bool, device=device)',
     "taught = torch.ones(b, dtype=torch.bool, device=device)",
     ["tests/test_train.py::test_distillation_tethers_the_joint_rows_to_the_teacher"]),
    ("paired gap's interval from the unpaired rows", "harmony/evaluate.py",
     "means = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)",
     "means = a[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)",
     ["tests/test_metrics.py::test_paired_interval_on_hand_made_differences"]),
    ("running speech keeps the mouth shut too long", "harmony/world/scene.py",
     "RUNNING_CLOSED_FRAMES = (1, 2)  # ...and shorter closures between them",
     "RUNNING_CLOSED_FRAMES = (2, 5)  # ...and shorter closures between them",
     ["tests/test_world.py::test_running_speech_lays_syllables_back_to_back"]),
    ("envelope sync reads the lags backwards", "harmony/metrics.py",
     "a, b = x[max(0, -lag):F - max(0, lag)], env[max(0, lag):F - max(0, -lag)]",
     "a, b = x[max(0, lag):F - max(0, -lag)], env[max(0, -lag):F - max(0, lag)]",
     ["tests/test_metrics.py::test_envelope_sync_on_a_hand_made_mouth"]),
    ("envelope sync averages every pixel", "harmony/metrics.py",
     "k = max(1, int(top * x.shape[1]))", "k = x.shape[1]",
     ["tests/test_metrics.py::test_envelope_sync_on_a_hand_made_mouth"]),
    ("running share ignored by the world's batches", "harmony/world/render.py",
     "else running(sc) if is_running_seed(s, p_running) else sc)",
     "else sc)",
     ["tests/test_train.py::test_speech_variant_share_reaches_the_rendered_pool"]),
    ("connected share ignored by the world's batches", "harmony/world/render.py",
     "clips = [render(quiet(sc) if q else connected(sc) if is_connected_seed(s, p_connected)",
     "clips = [render(quiet(sc) if q else running(sc) if False",
     ["tests/test_train.py::test_speech_variant_share_reaches_the_rendered_pool"]),
    ("connected speech keeps the syllables' voice", "harmony/world/audio.py",
     'if face is not None and face.voice.style == "connected":', "if False:",
     ["tests/test_world.py::test_connected_voice_is_rendered_by_the_second_synthesiser"]),
    ("connected speech leaves its gaps silent", "harmony/world/audio.py",
     "if gap_start is not None and t0 - gap_start < 0.25 and rng.random() > 0.1:", "if False:",
     ["tests/test_world.py::test_connected_speech_fills_each_gap_with_its_consonant"]),
    ("another voice for the joint rows too", "harmony/train.py",
     'za_list.append(noisy(a_a2v if task == "a2v" else a0, na, sigma_a))',
     "za_list.append(noisy(a_a2v, na, sigma_a))",
     ["tests/test_train_tasks.py::test_voice_augment_reaches_only_the_a2v_rows"]),
    ("another voice moves the voicing too", "harmony/train.py",
     'delta[:, 0, names.index("log_f0")] = strength * math.log(2.0) * r(b)',
     'delta[:, 0, [names.index("log_f0"), names.index("voicing")]] = strength * math.log(2.0) * r(b, 1)',
     ["tests/test_train_tasks.py::test_voice_augment_moves_the_voice_and_keeps_the_timing"]),
    ("quiet scene keeps its events", "harmony/world/scene.py",
     "o.event_frames = []", "o.event_frames = list(o.event_frames)",
     ["tests/test_world.py::test_quiet_scene_keeps_still_and_silent"]),
    # issue 22: what users would see (reference voice, anchors, training statistics, media rates, defaults)
    ("partner attention padded after the reference rows", "harmony/interaction.py",
     "part = torch.cat([part.new_zeros(q[:, :q_start].shape), part], dim=1)",
     "part = torch.cat([part, part.new_zeros(q[:, :q_start].shape)], dim=1)", REFERENCE_TESTS),
    ("ovi audio RoPE ignores the reference length", "harmony/interaction.py",
     "return (torch.arange(n_ref + n_audio, dtype=torch.float64) - n_ref) * cfg.audio.audio_rope_scale",
     "return torch.arange(n_ref + n_audio, dtype=torch.float64) * cfg.audio.audio_rope_scale", REFERENCE_TESTS),
    ("model returns the reference rows (drops the last target rows)", "harmony/model.py",
     "a_out = am.head(a, e_a)[:, n_ref:]", "a_out = am.head(a, e_a)[:, :La]", REFERENCE_TESTS),
    ("window: audio tokens do not keep their nearest frame", "harmony/interaction.py",
     "mask[dist.argmin(dim=0), torch.arange(n_audio)] = True", "pass", REFERENCE_TESTS),
    ("static-video anchor is the moving estimate", "harmony/guidance.py",
     "first = self.video_estimate[:, :, :1]", "first = self.video_estimate", GUIDANCE_TESTS),
    ("inverted text dropout (90 % without text)", "harmony/train.py",
     "drop_text = torch.rand(b, generator=gen) < tc.p_drop_text",
     "drop_text = torch.rand(b, generator=gen) > tc.p_drop_text", TRAIN_STATS_TESTS),
    ("reference voice dropped with the text draw", "harmony/train.py",
     'refs = [None if d else r for d, r in zip(drop_ref, batch["refs"])]',
     'refs = [None if d else r for d, r in zip(drop_text, batch["refs"])]', TRAIN_STATS_TESTS),
    ("reversed EMA (exports the live weights)", "harmony/train.py",
     "ema[k].lerp_(v.detach(), 1 - d)", "ema[k].lerp_(v.detach(), d)", TRAIN_STATS_TESTS),
    ("every mp4's audio written as 16 kHz", "harmony/media.py",
     'cmd += ["-f", "f32le", "-ar", str(int(sample_rate)), "-ac", str(audio.shape[0]), "-i", raw,',
     'cmd += ["-f", "f32le", "-ar", "16000", "-ac", str(audio.shape[0]), "-i", raw,', MEDIA_TESTS),
    ("Save AV writes its audio at the toy rate", "nodes/save_av.py",
     "media.write_mp4(path, frames, float(fps), wave, sample_rate)",
     "media.write_mp4(path, frames, float(fps), wave, 16000)", MEDIA_TESTS),
    ("default shift changed", "harmony/sampling.py",
     "DEFAULT_SHIFT = 5.0", "DEFAULT_SHIFT = 3.0", DEFAULTS_TESTS),
    ("default steps changed", "harmony/sampling.py",
     "DEFAULT_STEPS = 20", "DEFAULT_STEPS = 10", DEFAULTS_TESTS),
    # job weights: a job's own tensors, for that job only, and the shared ones back afterwards
    ("sampling ignores the job weights", "harmony/sampling.py",
     "with torch.no_grad(), job_weights(model, job.name, log):", "with torch.no_grad():", JOB_TESTS),
    ("every job samples with V2A's weights", "harmony/sampling.py",
     "with torch.no_grad(), job_weights(model, job.name, log):",
     'with torch.no_grad(), job_weights(model, "V2A", log):', JOB_TESTS),
    ("job weights are not put back", "harmony/job_weights.py",
     'module._parameters[leaf].data = old', "pass", JOB_TESTS),
    # tuned sampling settings: a job's own entry over the file-wide one, used when a run sets none
    ("a job's tuned settings are ignored", "harmony/jobs.py",
     "out.update({k: float(v) for k, v in own.items() if k in TUNED_KEYS})", "pass", GUIDANCE_TESTS),
    ("a run ignores the tuned shift", "harmony/sampling.py",
     "default_shift(cfg, job) if shift is None else shift,", "5.0 if shift is None else shift,", TUNED_TESTS),
    ("a run ignores the tuned scales", "harmony/sampling.py",
     "tuned_sv, tuned_sa = default_scales(cfg, job)", "tuned_sv, tuned_sa = 3.0, 2.0", TUNED_TESTS),
    # the timing anchor: the driven modality away from its prediction given the partner early
    ("timing anchor pulls towards the early partner", "harmony/guidance.py",
     'dv = dv + g.st * (x0v["joint"] - x0v["early"])', 'dv = dv + g.st * (x0v["early"] - x0v["joint"])',
     GUIDANCE_TESTS),
    ("timing anchor's audio partner late, not early", "harmony/guidance.py",
     "return torch.cat([za[:, k:], pad], dim=1) if k >= 0 else torch.cat([pad, za[:, :k]], dim=1)",
     "return torch.cat([pad, za[:, :-k or None]], dim=1) if k >= 0 else torch.cat([za[:, -k:], pad], dim=1)",
     GUIDANCE_TESTS),
    ("a run ignores the tuned timing scale", "harmony/sampling.py",
     "default_timing(cfg, job) if st is None else st,", "0.0 if st is None else st,",
     ["tests/test_pipeline.py::test_the_bundled_files_driven_jobs_sample_with_their_timing_anchor"]),
    # the resync pass: T2AV / I2AV's picture sampled again as A2V from its own sound, at A2V's settings
    ("resync pass at the joint run's shift", "harmony/sampling.py",
     "tail = sigma_schedule(steps, a2v.shift)[-(n_resync + 1):]",
     "tail = sigma_schedule(steps, shift)[-(n_resync + 1):]", RESYNC_TESTS),
    ("resync pass re-noises without the noise", "harmony/sampling.py",
     "zv = (1 - s0) * zv + s0 * noise_video.to(state)", "zv = (1 - s0) * zv", RESYNC_TESTS),
    ("resync pass lets the sound move", "harmony/sampling.py",
     "resync_job = Job(clean_audio=za, first_frame=job.first_frame)", "resync_job = Job(first_frame=job.first_frame)",
     RESYNC_TESTS),
    ("resync pass drops I2AV's first frame", "harmony/sampling.py",
     "resync_job = Job(clean_audio=za, first_frame=job.first_frame)", "resync_job = Job(clean_audio=za)",
     RESYNC_TESTS),
    ("a run ignores the tuned resync", "harmony/sampling.py",
     "default_resync(cfg, job) if resync is None else resync)", "0.0 if resync is None else resync)",
     RESYNC_TESTS + ["tests/test_pipeline.py::test_the_bundled_files_t2av_samples_with_its_resync_pass"]),
    ("A2V rows never hold a first frame", "harmony/train.py",
     "                sigma_v[first_a2v, 0] = 0", "                pass",
     ["tests/test_train_tasks.py::test_a2v_rows_may_hold_a_first_frame_too"]),
    # the audio decoder's pitch hold: a chime's sub-harmonic flips kept out, onsets and rises let through
    ("pitch hold ignores loudness onsets", "harmony/codecs/toy_audio.py",
     "free = onset | unvoiced                          # a new sound, or no pitch to keep", "free = unvoiced",
     CODEC_TESTS),
    ("pitch hold holds rises too", "harmony/codecs/toy_audio.py",
     "hold = ~free[:, i] & (out[:, i - 1] - log_f0[:, i] > limit)",
     "hold = ~free[:, i] & ((out[:, i - 1] - log_f0[:, i]).abs() > limit)",
     CODEC_TESTS),
    ("pitch hold compares with the raw previous pitch", "harmony/codecs/toy_audio.py",
     "hold = ~free[:, i] & (out[:, i - 1] - log_f0[:, i] > limit)",
     "hold = ~free[:, i] & (log_f0[:, i - 1] - log_f0[:, i] > limit)",
     CODEC_TESTS),
    ("a stand-in codec's latent shift not gated", "harmony/__main__.py",
     "if not shift <= COMPATIBLE_LATENT_SHIFT:", "if False:",
     ["tests/test_codec_stand_in.py"]),
    # the given media as given: the first-frame detail's gate, and the driving media passed through
    ("first-frame detail without its gate", "harmony/codecs/keyframe.py",
     "return (frames + gate * (image - image_roundtrip)).clamp(0, 1)",
     "return (frames + (image - image_roundtrip)).clamp(0, 1)", KEYFRAME_TESTS),
    ("first-frame detail's gate without its window", "harmony/codecs/keyframe.py",
     "d = F.avg_pool2d(d, k, stride=1, padding=radius, count_include_pad=False)", "d = d", KEYFRAME_TESTS),
    ("first-frame detail's gate ramps the wrong way", "harmony/codecs/keyframe.py",
     "return ((drop - d) / (drop - keep)).clamp(0, 1).permute(0, 2, 3, 1)",
     "return ((d - keep) / (drop - keep)).clamp(0, 1).permute(0, 2, 3, 1)", KEYFRAME_TESTS),
    ("V2A decodes the codec's round trip of the driving video", "harmony/pipeline.py",
     'frames = self.conform_clip(given, fps, frames.shape[0], "driving video", fit).float().cpu()', "pass",
     KEYFRAME_TESTS),
    # the tenth session: the colour weight, its patch share, and the jobs' tensors carried to a moved model
    ("colour weight ignores the patches' colour share", "harmony/train.py",
     'weight = 1 + tc.colour_weight * batch["colour"].to(device)[:, None]',
     'weight = 1 + tc.colour_weight * torch.ones_like(batch["colour"]).to(device)[:, None]', COLOUR_TESTS),
    ("colour-weighted video loss as a plain sum", "harmony/train.py",
     "return ((pred - target) ** 2 * noisy_frames).sum() / noisy_frames.sum().clamp(min=1e-6)",
     "return ((pred - target) ** 2 * noisy_frames).sum() / (noisy_frames > 0).sum().clamp(min=1)", COLOUR_TESTS),
    ("colour share counted per pixel, not per patch", "harmony/train_data.py",
     "return F.avg_pool2d(mask[:, None], stride)[:, 0].reshape(B, Fr, H // stride, W // stride)",
     "return F.max_pool2d(mask[:, None], stride)[:, 0].reshape(B, Fr, H // stride, W // stride)", COLOUR_TESTS),
    ("jobs-from copies nothing", "harmony/checkpoint.py", "out[key] = theirs[key]", "pass", JOB_TESTS),
    # the twelfth session: each job's own --only expression
    ("one --only for every job (the per-job entries ignored)", "harmony/checkpoint.py",
     'return only.get(job, only.get("", "")) if isinstance(only, dict) else only',
     'return only.get("", "") if isinstance(only, dict) else only', JOB_TESTS),
    # the eleventh session: the temporal term
    ("temporal term on a velocity network's raw output error", "harmony/train.py",
     "err = pred - target if x0_target else sigma * (target - pred)",
     "err = pred - target if x0_target else (target - pred)", TEMPORAL_TESTS),
    ("temporal term on the error itself, not its change", "harmony/train.py",
     "step = err[:, :, 1:] - err[:, :, :-1]", "step = err[:, :, 1:]", TEMPORAL_TESTS),
    ("temporal term never added", "harmony/train.py",
     "lv = lv + tc.lambda_temporal * _temporal_mse(ov[i], tgt_v, tv_list[i], x0_target)", "pass", TEMPORAL_TESTS),
]


def copy_tree(dst: str):
    """The repository as it is in the working tree (tracked files + harmony/ + tests/)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for top in ("harmony", "tests"):
        for folder, dirs, names in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
    for rel in sorted(set(files)):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dst, rel))


def run_tests(tree: str, tests: list) -> int:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True).returncode


def apply(tree: str, rel: str, old: str, new: str):
    """Replace the one line whose text (indentation aside) is ``old``; return the original text."""
    path = os.path.join(tree, rel)
    text = open(path, encoding="utf-8").read()
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == old.strip()]
    if len(hits) != 1:
        return None, len(hits)
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = indent + new.strip() + "\n"
    open(path, "w", encoding="utf-8").write("".join(lines))
    return text, 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", default="", help="only mutations whose name contains this")
    a = ap.parse_args()
    todo = [m for m in MUTATIONS if a.k.lower() in m[0].lower()]
    with tempfile.TemporaryDirectory(prefix="harmony-mutate-") as tree:
        copy_tree(tree)
        tests = sorted({t for m in todo for t in m[4]})
        t0 = time.time()
        if run_tests(tree, tests) != 0:
            print(f"baseline: {' '.join(tests)} fail without any mutation; fix them first")
            return 2
        print(f"baseline: {' '.join(tests)} pass unmutated ({time.time() - t0:.0f} s)", flush=True)
        survived, stale = [], []
        for name, rel, old, new, tests in todo:
            original, hits = apply(tree, rel, old, new)
            if original is None:
                stale.append(name)
                print(f"STALE     {name}: {rel} has {hits} lines equal to {old!r}")
                continue
            t0 = time.time()
            try:
                rc = run_tests(tree, tests)
            finally:
                open(os.path.join(tree, rel), "w", encoding="utf-8").write(original)
            verdict = "killed" if rc != 0 else "SURVIVED"
            if rc == 0:
                survived.append(name)
            print(f"{verdict:9} {name}  [{rel}: {new.strip()}]  ({time.time() - t0:.0f} s)", flush=True)
        killed = len(todo) - len(survived) - len(stale)
        print(f"{killed}/{len(todo)} mutations killed, {len(survived)} survived, {len(stale)} stale")
        return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
