"""Training data of the Cross-Task Synergy trainer (`harmony.train`): world clips rendered and
encoded by the codecs into a refreshed in-memory pool (`LatentPool`), a pool saved once for
``train --latents`` (`encode_latent_pool`), and out-of-world stills for I2AV rows."""
from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

def _render(args):
    """Render training clips (runs in worker processes)."""
    from . import world

    seeds, seconds, split, p_quiet, p_running, p_connected = args
    b = world.sample_batch(seeds, seconds, split, p_quiet, p_running, p_connected)
    return (b.frames, b.waves, b.ref_voices, b.has_ref, b.prompts, b.audio_captions, b.transcripts,
            b.quiet.tolist())


def colour_share(frames, stride: int) -> torch.Tensor:
    """``frames [B, F, H, W, 3]`` (0..1) -> ``[B, F, H/stride, W/stride]``: the share of each latent
    position's ``stride x stride`` patch whose pixels read as one of the world's colours
    (:func:`harmony.metrics.colour_pixels`, what colour F1 counts)."""
    from .metrics import colour_pixels

    B, Fr, H, W, _ = frames.shape
    mask = torch.from_numpy(colour_pixels(frames.reshape(B * Fr, H, W, 3))).float()
    return F.avg_pool2d(mask[:, None], stride)[:, 0].reshape(B, Fr, H // stride, W // stride)


class LatentPool:
    """Encoded training clips (video/audio latents, texts, reference voice), refreshed
    with new seeds as training goes, so the model never sees a fixed small set."""

    def __init__(self, codecs, seconds: float, size: int, seed: int, workers: int = 0, device="cpu",
                 data: dict | None = None, split: str | None = None, p_quiet: float = 0.0, colour: bool = False,
                 p_running: float = 0.0, p_connected: float = 0.0):
        from . import world

        self.world, self.seconds, self.device, self.split = world, seconds, device, split or None
        self.p_quiet = float(p_quiet)  # share of clips rendered as their quiet variant (world.quiet)
        self.p_running = float(p_running)  # share of clips whose face speaks running speech (world.running)
        self.p_connected = float(p_connected)  # share spoken by the second synthesiser (world.connected)
        self.video_codec, self.audio_codec = codecs
        self.rng = torch.Generator().manual_seed(seed)
        self.next_seed = (seed * 7_919_993) % (world.HELDOUT_START // 2)
        self.workers = workers
        self.colour = colour  # also keep each latent position's share of world-colour pixels (train --colour-weight)
        self.data = self._make(size) if data is None else data
        self.data.setdefault("quiet", [False] * len(self.data["video"]))  # saved pools and real clips: none quiet
        self.size = len(self.data["video"])

    def save(self, path: str, meta: dict | None = None):
        """Write the encoded clips (latents, reference voices, texts) to one safetensors file."""
        from .weightfile import save_safetensors

        refs = self.data["refs"]
        like = next((r for r in refs if r is not None), None)
        if like is None:
            like = torch.zeros(1, self.data["audio"].shape[-1])
        tensors = {"video": self.data["video"].contiguous(), "audio": self.data["audio"].contiguous(),
                   "refs": torch.stack([r if r is not None else torch.zeros_like(like) for r in refs]),
                   "has_ref": torch.tensor([r is not None for r in refs])}
        texts = {k: self.data[k] for k in ("prompt", "caption", "transcript")}
        save_safetensors(tensors, path, {"texts": json.dumps(texts), "seconds": str(self.seconds),
                                         **{k: str(v) for k, v in (meta or {}).items()}})

    @classmethod
    def load(cls, path: str, codecs, seed: int, device="cpu") -> "LatentPool":
        """A pool from :meth:`save`'s file; ``seed`` drives which clips each batch draws."""
        from safetensors import safe_open

        if not os.path.isfile(path):
            raise FileNotFoundError(f"--latents: {path!r} does not exist; write one with LatentPool.save "
                                    "(python -m harmony ablate does)")
        with safe_open(path, "pt") as fh:
            meta = fh.metadata() or {}
            t = {k: fh.get_tensor(k) for k in fh.keys()}
        if "texts" not in meta or not {"video", "audio", "refs", "has_ref"} <= set(t):
            raise ValueError(f"--latents: {path!r} is not a saved latent pool (no texts / latents in it)")
        data = {"video": t["video"], "audio": t["audio"],
                "refs": [r if h else None for r, h in zip(t["refs"], t["has_ref"].tolist())],
                **json.loads(meta["texts"])}
        return cls(codecs, float(meta.get("seconds", 3.0)), 0, seed, device=device, data=data)

    def _take_seeds(self, n):
        seeds = list(range(self.next_seed, self.next_seed + n))
        self.next_seed += n
        return seeds

    @torch.no_grad()
    def _make(self, n, chunk=32):
        jobs = [(self._take_seeds(min(chunk, n - i)), self.seconds, self.split, self.p_quiet, self.p_running,
                 self.p_connected)
                for i in range(0, n, chunk)]
        out = {k: [] for k in ("video", "audio", "refs", "prompt", "caption", "transcript", "quiet")}
        if self.colour:
            out["colour"] = []

        def add(part):  # encode each rendered chunk as it arrives
            frames, waves, refs, has_ref, prompts, captions, transcripts, quiet = part
            dev = self.device
            out["video"].append(self.video_codec.encode(torch.from_numpy(frames).to(dev)).cpu())
            if self.colour:
                out["colour"].append(colour_share(frames, self.video_codec.spatial_stride))
            out["audio"].append(self.audio_codec.encode(torch.from_numpy(waves).to(dev)).cpu())
            ref = self.audio_codec.encode(torch.from_numpy(refs).to(dev)).cpu()
            out["refs"].extend(r if h else None for r, h in zip(ref, has_ref))
            out["prompt"] += prompts
            out["caption"] += captions
            out["transcript"] += transcripts
            out["quiet"] += quiet

        if self.workers > 1:
            import multiprocessing as mp
            with mp.get_context("spawn").Pool(self.workers) as pool:
                for part in pool.imap(_render, jobs):
                    add(part)
        else:
            for job in jobs:
                add(_render(job))
        for k in ("video", "audio", "colour"):
            if k in out:
                out[k] = torch.cat(out[k])
        return out

    def refresh(self, n: int):
        """Replace the oldest `n` clips with freshly rendered ones."""
        new = self._make(n)
        for k in self.data:
            if torch.is_tensor(self.data[k]):
                self.data[k] = torch.cat([self.data[k][n:], new[k]])
            else:
                self.data[k] = self.data[k][n:] + new[k]

    def batch(self, b: int):
        idx = torch.randint(0, self.size, (b,), generator=self.rng).tolist()
        pick = lambda k: [self.data[k][i] for i in idx]  # noqa: E731
        out = dict(video=self.data["video"][idx], audio=self.data["audio"][idx],
                   refs=pick("refs"), prompt=pick("prompt"), caption=pick("caption"),
                   transcript=pick("transcript"), quiet=torch.tensor(pick("quiet"), dtype=torch.bool))
        if "colour" in self.data:
            out["colour"] = self.data["colour"][idx]
        return out


class _WholeCodecSteps:
    """A video codec with a temporal stride (the Wan2.2 VAE takes 4k+1 frames) fed the
    longest prefix of each clip it accepts; other codecs get the clip unchanged."""

    def __init__(self, codec):
        self.codec = codec
        self.stride = int(getattr(codec, "temporal_stride", 1))

    def encode(self, frames):
        if self.stride > 1:
            frames = frames[:, : 1 + self.stride * ((frames.shape[1] - 1) // self.stride)]
        return self.codec.encode(frames)


def encode_latent_pool(path: str, video_codec, audio_codec, size: int, seconds: float = 1.0, seed: int = 0,
                       workers: int = 0) -> LatentPool:
    """Render ``size`` world clips, encode them with the given codecs and save the pool to
    ``path`` for ``train --latents`` (the trainer's own codecs are the tiny pair, 16 video
    channels; a ``--config 5b`` model needs the Wan2.2 VAE's 48). A codec with a temporal
    stride (Wan2.2 VAE: 4) gets each clip cut to 4k+1 frames."""
    pool = LatentPool((_WholeCodecSteps(video_codec), audio_codec), seconds, size, seed, workers)
    pool.save(path, {"video_codec": type(video_codec).__name__, "audio_codec": type(audio_codec).__name__,
                     "video_channels": int(pool.data["video"].shape[1])})
    return pool


@torch.no_grad()
def encode_foreign_stills(video_codec, n: int, seed: int, device="cpu") -> torch.Tensor:
    """``n`` out-of-world stills (`harmony.world.stills`) as one-frame latents ``[n, C, 1, h, w]``."""
    from .world.stills import foreign_stills

    images, _ = foreign_stills(n, seed)
    return torch.cat([video_codec.encode(torch.from_numpy(images[i:i + 64])[:, None].to(device)).cpu()
                      for i in range(0, n, 64)])
