// Harmony frontend extension: an in-node player for Harmony Save AV.
//
// The node's UI message (key "harmony_av") names the saved mp4 and carries a
// frame strip (base64 JPEG), the waveform envelope and the measured
// audio-video offset. Shown in the node:
//   - a <video> player with sound (controls, loop);
//   - the AV timeline: the frame strip over the waveform, one shared time axis,
//     a playhead that follows playback (click or drag to seek);
//   - the sync badge: the measured offset in ms and in frames, coloured by size; a
//     low-confidence measurement is shown as "uncertain" (grey), not as a verdict.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPE = "HarmonySaveAV";
const UI_KEY = "harmony_av";
const TIMELINE_HEIGHT = 96;
const STRIP_SHARE = 0.5; // upper half: frames, lower half: waveform

export function describeOffset(offsetS, confidence, fps, level, minConfidence) {
  // Text and level ("good" | "fair" | "off" | "uncertain" | "none") for a measured offset.
  // `level` / `minConfidence` come from the node (nodes/save_av.py sync_level); a confidence
  // below the threshold is no evidence either way, so the offset is shown as uncertain.
  if (offsetS === null || offsetS === undefined || Number.isNaN(offsetS)) {
    return { text: "A/V offset: not measured", level: "none" };
  }
  const ms = Math.round(offsetS * 1000);
  const frames = offsetS * fps;
  const sign = ms > 0 ? "+" : "";
  const hasConf = typeof confidence === "number";
  const minConf = typeof minConfidence === "number" ? minConfidence : null;
  if (!level) {
    if (minConf !== null && (!hasConf || confidence < minConf)) level = "uncertain";
    else level = Math.abs(frames) <= 1 ? "good" : Math.abs(frames) <= 3 ? "fair" : "off";
  }
  const conf = hasConf ? ` · confidence ${confidence.toFixed(2)}` : "";
  if (level === "uncertain") {
    const why = minConf !== null ? ` below ${minConf.toFixed(2)}` : "";
    return { text: `A/V sync uncertain: ${sign}${ms} ms measured, confidence ${hasConf ? confidence.toFixed(2) : "?"}${why}`,
             level };
  }
  const who = ms === 0 ? "in sync" : ms > 0 ? "audio late" : "audio early";
  return { text: `A/V offset ${sign}${ms} ms (${sign}${frames.toFixed(1)} frames, ${who})${conf}`, level };
}

const LEVEL_COLOURS = { good: "#3fbf6f", fair: "#e0a030", off: "#e05050", uncertain: "#a9b4c2", none: "#888" };

function viewUrl(clip) {
  const params = new URLSearchParams({ filename: clip.filename, subfolder: clip.subfolder || "", type: clip.type });
  return api.apiURL(`/view?${params.toString()}`);
}

function drawTimeline(canvas, clip, strip, time) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  const stripH = Math.round(h * STRIP_SHARE);
  ctx.fillStyle = "#151518";
  ctx.fillRect(0, 0, w, h);
  if (strip && strip.complete && strip.naturalWidth > 0) ctx.drawImage(strip, 0, 0, w, stripH);
  // waveform envelope, mirrored around the centre of the lower half
  const env = clip.envelope || [];
  const mid = stripH + (h - stripH) / 2, amp = (h - stripH) / 2 - 2;
  ctx.fillStyle = "#5ac8ff";
  for (let x = 0; x < w; x++) {
    const v = env.length ? env[Math.min(env.length - 1, Math.floor((x / w) * env.length))] : 0;
    const y = Math.max(1, v * amp);
    ctx.fillRect(x, mid - y, 1, 2 * y);
  }
  // the measured offset: where the picture's events land on the sound's axis
  const duration = clip.seconds || 1;
  if (typeof clip.offset_s === "number" && clip.offset_s !== 0) {
    const dx = (clip.offset_s / duration) * w;
    ctx.strokeStyle = "rgba(255,255,255,0.35)";
    ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(w / 2, stripH); ctx.lineTo(w / 2 + dx, h); ctx.stroke();
    ctx.setLineDash([]);
  }
  // playhead
  const px = Math.min(w - 1, Math.max(0, (time / duration) * w));
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(px, 0, 2, h);
}

function buildPlayer(node) {
  const root = document.createElement("div");
  root.className = "harmony-av-player";
  root.style.cssText = "display:flex;flex-direction:column;gap:4px;width:100%;height:100%;";
  const video = document.createElement("video");
  video.controls = true;
  video.loop = true;
  video.preload = "auto";
  video.style.cssText = "width:100%;flex:1 1 auto;min-height:120px;background:#000;object-fit:contain;";
  const canvas = document.createElement("canvas");
  canvas.className = "harmony-av-timeline";
  canvas.width = 400;
  canvas.height = TIMELINE_HEIGHT;
  canvas.title = "Frames over the waveform; click to seek";
  canvas.style.cssText = `width:100%;height:${TIMELINE_HEIGHT}px;cursor:pointer;`;
  const badge = document.createElement("div");
  badge.className = "harmony-av-sync";
  badge.style.cssText = "font:12px sans-serif;padding:2px 6px;border-radius:4px;color:#111;";
  root.append(video, canvas, badge);

  const state = { clip: null, strip: new Image() };
  const redraw = () => state.clip && drawTimeline(canvas, state.clip, state.strip, video.currentTime);
  state.strip.onload = redraw;
  video.addEventListener("timeupdate", redraw);
  video.addEventListener("seeked", redraw);
  const tick = () => { redraw(); if (!video.paused) requestAnimationFrame(tick); };
  video.addEventListener("play", () => requestAnimationFrame(tick));
  const seek = (e) => {
    if (!state.clip) return;
    const r = canvas.getBoundingClientRect();
    video.currentTime = Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)) * state.clip.seconds;
    redraw();
  };
  canvas.addEventListener("pointerdown", (e) => { seek(e); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => { if (e.buttons) seek(e); });

  const show = (clip) => {
    state.clip = clip;
    video.src = viewUrl(clip);
    state.strip.src = `data:image/jpeg;base64,${clip.strip}`;
    const { text, level } = describeOffset(clip.offset_s, clip.confidence, clip.fps, clip.sync_level, clip.min_confidence);
    badge.textContent = `${text} · ${clip.frames} frames @ ${clip.fps} fps, ${clip.audio_seconds} s audio`;
    badge.dataset.level = level;
    badge.style.background = LEVEL_COLOURS[level];
    root.dataset.filename = clip.filename;
    redraw();
  };
  return { root, video, show };
}

app.registerExtension({
  name: "Harmony.AVPlayer",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const clip = message?.[UI_KEY]?.[0];
      if (!clip) return;
      if (!this.harmonyPlayer) {
        this.harmonyPlayer = buildPlayer(this);
        this.addDOMWidget("harmony_player", "harmony_av_player", this.harmonyPlayer.root, {
          serialize: false,
          hideOnZoom: false,
          getMinHeight: () => 160 + TIMELINE_HEIGHT + 24,
        });
        const [w, h] = this.size;
        this.setSize([Math.max(w, 380), Math.max(h, this.computeSize()[1])]);
      }
      this.harmonyPlayer.show(clip);
      app.graph.setDirtyCanvas(true, true);
    };
  },
});
