// Harmony frontend extension: names on the multiline text boxes of Harmony nodes.
//
// ComfyUI's frontend (1.27, shipped with ComfyUI 0.3.64) draws a multiline STRING input as a
// bare <textarea>: its name appears only as the placeholder, so once the box holds text
// (Harmony Text Conditioning fills "prompt" and "audio caption" with a demo) the three boxes
// look alike. This extension draws each box's name in its top-left corner as a background
// image (so it stays put while the text scrolls and never becomes part of the value), makes
// room for it with a little top padding, and puts the input's tooltip on hover.
import { app } from "../../scripts/app.js";

const LABEL_HEIGHT = 15; // px of top padding kept for the name

export function labelText(widgetName) {
  // "audio_caption" -> "audio caption"
  return String(widgetName).replace(/_/g, " ");
}

export function labelImage(text, colour) {
  // A CSS url() of an SVG that writes `text` in small letters.
  const safe = String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${8 * safe.length + 16}" height="${LABEL_HEIGHT}">` +
    `<text x="0" y="11" font-family="sans-serif" font-size="10" font-weight="600" fill="${colour}">${safe}</text></svg>`;
  return `url("data:image/svg+xml,${encodeURIComponent(svg)}")`;
}

export function labelTextarea(el, text, tooltip) {
  // Give one <textarea> its visible name (idempotent).
  if (!el || !el.style || el.dataset?.harmonyLabel === text) return;
  el.style.backgroundImage = labelImage(text, "#8c8c8c");
  el.style.backgroundRepeat = "no-repeat";
  el.style.backgroundPosition = "6px 2px";
  el.style.paddingTop = `${LABEL_HEIGHT + 2}px`;
  if (tooltip) el.title = tooltip;
  if (el.setAttribute) el.setAttribute("aria-label", text);
  if (el.dataset) el.dataset.harmonyLabel = text;
}

app.registerExtension({
  name: "harmony.textLabels",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!String(nodeData?.name || "").startsWith("Harmony")) return;
    const inputs = { ...(nodeData.input?.required || {}), ...(nodeData.input?.optional || {}) };
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      for (const widget of this.widgets || []) {
        const el = widget.inputEl || widget.element;
        if (!el || el.tagName !== "TEXTAREA") continue;
        const tooltip = inputs[widget.name]?.[1]?.tooltip;
        labelTextarea(el, labelText(widget.label || widget.name), tooltip);
      }
      return result;
    };
  },
});
