"""Fine-tune the tiny video codec on world frames and out-of-world stills (issue 19, item 3).

A new video codec would mean retraining the DiT, which this CPU cannot do in a session. The
encoder, and so the latent space the DiT was trained in, stays frozen here: only the decoder
learns to draw what the latents already hold. Whatever the latents lost about an image
(a flat colour outside the world's palette, text) no decoder can bring back, so this
experiment also measures how much of the out-of-world loss is the decoder's. (The shipped decoder
was tuned the same way on world frames alone: ``scripts/finetune_video_decoder.py``; this adds
out-of-world stills and the out-of-world measurements: lab notebook E8.)

``--encoder-anchor W`` (W > 0) trains the encoder too, with the DiT's latent space held in place
instead of frozen: on world frames its normalised latents are pulled to the shipped encoder's
(weight W on their mean squared difference), and the decoder keeps decoding the shipped encoder's
world latents (what the DiT was trained to produce). An out-of-world image is free to land
anywhere else in the latent space, so the codec can learn to keep it without a retrained DiT
(lab notebook N1). ``--latent-bound B`` penalises normalised latents beyond +-B, so that those
new latents stay in the range the DiT has seen. ``--widen C`` asks what a higher-rate latent
buys: a codec with C channels, the first 16 held to the shipped latents, the others free (a DiT
would have to learn them; lab notebook N4).

    python scripts/decoder_finetune.py --minutes 8 --out runs/decoder/tiny_codecs.safetensors
    python scripts/decoder_finetune.py --encoder-anchor 10 --minutes 12 --out runs/codec/n1/tiny_codecs.safetensors

Prints (and writes next to --out as JSON) the round-trip PSNR before / after on held-out
world frames, held-out synthetic stills (harmony.world.stills) and the ``i2av_foreign``
control's images (matplotlib's sample data, never trained on).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frames_of(seeds, seconds, every=2):
    """World frames ``[N, 64, 64, 3]`` (every ``every``-th frame) of the given scene seeds."""
    from harmony import world

    out = [world.render(world.sample_scene(s, seconds=seconds)).frames[::every] for s in seeds]
    return torch.from_numpy(np.concatenate(out)).float()


def psnr(a, b):
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return (10 * torch.log10(1 / mse)).mean().item()


def roundtrip(codec, images):
    with torch.no_grad():
        return codec.decode(codec.encode(images[:, None]))[:, 0]


def colour_masks(frames: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` -> ``[N, H, W]`` bool: pixels of one of the world's colours (harmony.metrics)."""
    from harmony.metrics import colour_pixels

    return np.concatenate([colour_pixels(frames[i:i + 256]) for i in range(0, len(frames), 256)])


def tuning_clips(n: int = 8, seconds: float = 3.0):
    """``n`` tuning clips per split (never the held-out seeds the evaluation reports)."""
    from harmony import world

    return [world.render(world.sample_scene(s, split, seconds)) for split in world.SPLITS
            for s in world.tuning_seeds(split, n)]


def clip_scores(codec, clips) -> dict:
    """Through the codec, per clip, averaged: colour F1 against the scene's colours and visual-event F1
    against its event times (+-1 frame), as the evaluation reads them (harmony.metrics)."""
    from harmony.metrics import colour_f1, detect_visual_events, event_f1

    colour, events = [], []
    for c in clips:
        rt = roundtrip(codec, torch.from_numpy(c.frames)).numpy()
        want = {o.colour for o in c.scene.objects} | ({c.scene.face.hair} if c.scene.face else set())
        colour.append(colour_f1(rt, want))
        gt = [t for t, _, _ in c.scene.events()]
        events.append(event_f1(detect_visual_events(rt, c.fps), gt, 1.0 / c.fps + 1e-6))
    return {"tuning_colour_f1": float(np.mean(colour)), "tuning_visual_event_f1": float(np.mean(events))}


def widened(video, channels: int):
    """A copy of ``video`` with ``channels`` latent channels: the shipped weights in place, the new
    encoder outputs randomly initialised, the decoder's weights for them zero (it decodes the shipped
    latents exactly as before until it learns to read the new channels)."""
    from harmony.codecs.toy_video import VideoCodec

    if channels <= video.latent_channels:
        raise SystemExit(f"--widen {channels}: give more than the shipped {video.latent_channels} channels")
    wide = VideoCodec(latent_channels=channels, width=video.width)
    state = wide.state_dict()
    for name, old in video.state_dict().items():
        new = state[name].clone()
        if name == "decoder.0.weight":
            new.zero_()
        elif name == "latent_mean":
            new.zero_()
        elif name == "latent_std":
            new.fill_(1.0)
        new[tuple(slice(0, n) for n in old.shape)] = old
        state[name] = new
    wide.load_state_dict(state)
    return wide


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--still-share", type=float, default=0.5, help="share of each batch that is out-of-world stills")
    ap.add_argument("--encoder-anchor", type=float, default=0.0,
                    help="0: the encoder is frozen (E8); >0: train it too, world latents held to the shipped "
                         "encoder's with this weight")
    ap.add_argument("--latent-bound", type=float, default=4.0,
                    help="with --encoder-anchor: normalised latents beyond +-this are penalised")
    ap.add_argument("--world-teacher", action="store_true",
                    help="with --encoder-anchor: world frames' targets are the shipped decoder's pictures of the "
                         "shipped latents (not the frames): world clips decode as before, only new images change")
    ap.add_argument("--widen", type=int, default=0, metavar="C",
                    help="with --encoder-anchor: a codec with C latent channels (more than the shipped 16), whose "
                         "first 16 are held to the shipped latents and the rest start unread by the decoder: "
                         "what a higher-rate latent buys (a DiT would have to learn the new channels)")
    ap.add_argument("--colour-weight", type=float, default=0.0, metavar="W",
                    help="world pixels of a world colour (harmony.metrics' colour masks) weigh 1 + W in the "
                         "decoder's loss: the objects' colours over the background (notebook Q4)")
    ap.add_argument("--cosine", action="store_true", help="decay the learning rate to 0 over --minutes (cosine)")
    ap.add_argument("--n-stills", type=int, default=2048, help="out-of-world training stills")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/decoder/tiny_codecs.safetensors")
    args = ap.parse_args(argv)
    if args.widen and not args.encoder_anchor > 0:
        ap.error("--widen needs --encoder-anchor (the encoder must train)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from harmony.codecs.tiny import load_codecs, save_codecs
    from harmony.controls import foreign_images
    from harmony.world import is_heldout
    from harmony.world.scene import heldout_seeds
    from harmony.world.stills import foreign_stills

    video, audio = load_codecs()
    t0 = time.time()
    train_seeds = [s for s in range(200) if not is_heldout(s)][:120]
    world_train = frames_of(train_seeds, 2.0)
    world_test = frames_of([s for split in ("speech", "ambient", "complex") for s in heldout_seeds(split, 4)], 2.0, 4)
    stills_train = torch.from_numpy(foreign_stills(args.n_stills, seed=1)[0])
    stills_test = torch.from_numpy(foreign_stills(64, seed=999)[0])
    fimg = foreign_images()
    control = torch.from_numpy(np.stack(list(fimg.values()))) if fimg else None
    print(f"data: {len(world_train)} world frames, {len(stills_train)} stills ({time.time() - t0:.0f} s)")

    tuning = tuning_clips()

    def report(tag):
        row = {"world_heldout_db": psnr(roundtrip(video, world_test), world_test),
               "stills_heldout_db": psnr(roundtrip(video, stills_test), stills_test),
               **clip_scores(video, tuning)}
        if control is not None:
            rt = roundtrip(video, control)
            row.update({f"{k}_db": psnr(rt[i:i + 1], control[i:i + 1]) for i, k in enumerate(fimg)})
        print(tag, " ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
        return row

    before = report("before:")
    shipped = copy.deepcopy(video).eval()  # the encoder the DiT was trained with
    c0 = shipped.latent_channels
    if args.widen:
        video = widened(video, args.widen)
    # the shipped encoder's latents: the DiT's latent space (fixed inputs when the encoder is frozen,
    # targets when it trains)
    with torch.no_grad():
        z_world = torch.cat([shipped.encode_raw(x.permute(0, 3, 1, 2)) for x in world_train.split(256)])
        z_still = torch.cat([shipped.encode_raw(x.permute(0, 3, 1, 2)) for x in stills_train.split(256)])
        world_target = (torch.cat([shipped.decode_raw(z) for z in z_world.split(256)]) if args.world_teacher
                        else world_train.permute(0, 3, 1, 2))
    # [N, 1, H, W]: 1 where a world frame's pixel is one of the world's colours (what colour F1 reads)
    coloured = torch.from_numpy(colour_masks(world_train.numpy())).float()[:, None]
    train_encoder = args.encoder_anchor > 0
    if train_encoder and args.colour_weight:
        ap.error("--colour-weight is for the decoder alone (no --encoder-anchor)")
    params = list(video.decoder.parameters()) + (list(video.encoder.parameters()) if train_encoder else [])
    opt = torch.optim.Adam(params, lr=args.lr)
    video.train()
    std = video.latent_std.view(1, -1, 1, 1)
    mean = video.latent_mean.view(1, -1, 1, 1)
    std0 = shipped.latent_std.view(1, -1, 1, 1)
    n_extra = video.latent_channels - c0  # widened channels: zero in the shipped latents the DiT produces
    n_still = int(round(args.batch * args.still_share))
    n_world = args.batch - n_still
    step, t_train = 0, time.time()
    while (elapsed := time.time() - t_train) < args.minutes * 60:
        if args.cosine:
            for group in opt.param_groups:
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * elapsed / (args.minutes * 60)))
        iw = torch.randint(0, len(z_world), (n_world,))
        i_s = torch.randint(0, len(z_still), (n_still,))
        target = torch.cat([world_train[iw], stills_train[i_s]]).permute(0, 3, 1, 2)
        if train_encoder:
            z = video.encode_raw(target)
            anchor = (((z[:n_world, :c0] - z_world[iw]) / std0) ** 2).mean()
            bound = F.relu(((z - mean) / std).abs() - args.latent_bound).pow(2).mean()
            dit = F.pad(z_world[iw], (0, 0, 0, 0, 0, n_extra))
            rec = video.decode_raw(torch.cat([z, dit]))  # its own latents, and the DiT's
            target2 = torch.cat([world_target[iw], target[n_world:], world_target[iw]])
            loss = F.mse_loss(rec, target2) + 0.1 * F.l1_loss(rec, target2) + args.encoder_anchor * anchor + bound
        else:
            rec = video.decode_raw(torch.cat([z_world[iw], z_still[i_s]]))
            weight = torch.cat([1 + args.colour_weight * coloured[iw], torch.ones(n_still, 1, 64, 64)])
            loss = (weight * (rec - target) ** 2).mean() + 0.1 * (weight * (rec - target).abs()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            extra = f" anchor {anchor.item():.4f} bound {bound.item():.4f}" if train_encoder else ""
            print(f"step {step} loss {loss.item():.5f}{extra} ({time.time() - t_train:.0f} s)", flush=True)
    video.eval()
    after = report("after: ")
    if train_encoder:  # how far the world latents moved, in latent standard deviations
        with torch.no_grad():
            z_new = torch.cat([video.encode_raw(x.permute(0, 3, 1, 2)) for x in world_test.split(256)])
            z_ref = torch.cat([shipped.encode_raw(x.permute(0, 3, 1, 2)) for x in world_test.split(256)])
        after["world_latent_rms_shift"] = (((z_new[:, :c0] - z_ref) / std0) ** 2).mean().sqrt().item()
        print(f"world latents moved by {after['world_latent_rms_shift']:.4f} std (held-out frames)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_codecs(video, audio, args.out, {"decoder_finetune": json.dumps(vars(args))})
    summary = {"command": "python scripts/decoder_finetune.py " + " ".join(argv or sys.argv[1:]),
               "steps": step, "train_s": round(time.time() - t_train), "before": before, "after": after}
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {args.out} ({step} steps)")


if __name__ == "__main__":
    main()
