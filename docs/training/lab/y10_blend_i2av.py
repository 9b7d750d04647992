"""Lab: the bundled file with I2AV's own tensors = w * X12's (W5) + (1 - w) * the bundled (X14 step 1200)."""
import sys, shutil
from safetensors import safe_open
from safetensors.torch import save_file
w, out = float(sys.argv[1]), sys.argv[2]
src, old = "harmony/assets/harmony_tiny.safetensors", "runs/x/c_ship/harmony_tiny.safetensors"
with safe_open(src, "pt") as f, safe_open(old, "pt") as g:
    meta = f.metadata()
    t = {k: f.get_tensor(k) for k in f.keys()}
    for k in t:
        if k.startswith("jobs.I2AV."):
            t[k] = (w * g.get_tensor(k).float() + (1 - w) * t[k].float()).to(t[k].dtype)
save_file(t, out, metadata=meta)
shutil.copy(src.replace(".safetensors", ".text.safetensors"), out.replace(".safetensors", ".text.safetensors"))
