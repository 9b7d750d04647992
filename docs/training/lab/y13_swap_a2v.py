"""Lab: the bundled file with A2V's own video blocks taken from a train export (w x the export + (1-w) x the bundled)."""
import sys, shutil
from safetensors import safe_open
from safetensors.torch import save_file
export, out = sys.argv[1], sys.argv[2]
w = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
src = "harmony/assets/harmony_tiny.safetensors"
with safe_open(src, "pt") as f, safe_open(export, "pt") as g:
    meta = f.metadata()
    t = {k: f.get_tensor(k) for k in f.keys()}
    n = 0
    for k in t:
        if k.startswith("jobs.A2V.video_model.blocks."):
            new = g.get_tensor(k[len("jobs.A2V."):]).float()
            t[k] = (w * new + (1 - w) * t[k].float()).to(t[k].dtype)
            n += 1
save_file(t, out, metadata=meta)
shutil.copy(src.replace(".safetensors", ".text.safetensors"), out.replace(".safetensors", ".text.safetensors"))
print("swapped", n, "tensors")
