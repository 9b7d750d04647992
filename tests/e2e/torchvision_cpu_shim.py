"""Make a CUDA-built torchvision importable next to a CPU-only torch (test machines only).

ComfyUI imports torchvision at start-up. PyPI's x86-64 torchvision wheels are
built against CUDA, while a CPU-only torch (e.g. torch 2.13.0+cpu) lacks the
CUDA libraries its ``_C.so`` links to, so ``import torchvision`` fails with
"operator torchvision::nms does not exist". This script builds small stub
libraries (libc10_cuda.so, libtorch_cuda.so, libcudart.so.13) that define the
missing symbols; none of them is ever called on CPU. ComfyUI then runs with
``LD_LIBRARY_PATH=<venv>/harmony-e2e-shim``, which the e2e test sets itself.

    python tests/e2e/torchvision_cpu_shim.py /work/comfyui-venv

Not needed (and it does nothing) where torchvision already imports.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

SHIM_DIR_NAME = "harmony-e2e-shim"


def _python(venv):
    return os.path.join(venv, "bin", "python")


def torchvision_imports(venv, env=None) -> bool:
    run = subprocess.run([_python(venv), "-c", "import torchvision"], capture_output=True, env=env)
    return run.returncode == 0


def build(venv: str) -> str | None:
    """Build the stubs into ``<venv>/harmony-e2e-shim``; return that folder (None if not needed)."""
    if torchvision_imports(venv):
        return None
    site = subprocess.run([_python(venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    tv_c = glob.glob(os.path.join(site, "torchvision", "_C*.so"))[0]
    torch_lib = os.path.join(site, "torch", "lib")
    provided = set()
    for lib in glob.glob(os.path.join(torch_lib, "*.so*")):
        out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout
        provided |= {line.split()[-1] for line in out.splitlines() if line.strip()}
    undefined = subprocess.run(["nm", "-D", "--undefined-only", tv_c], capture_output=True, text=True).stdout
    plain, cudart = [], []
    for line in undefined.splitlines():
        sym = line.split()[-1]
        name, _, version = sym.partition("@")
        if version.startswith("libcudart"):
            cudart.append(name)
        elif not version and name not in provided and re.search(r"cuda|CUDA", name):
            plain.append(name)
    out_dir = os.path.join(venv, SHIM_DIR_NAME)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        def compile_lib(soname, names, version_node=None):
            src = os.path.join(tmp, soname + ".c")
            with open(src, "w") as f:
                for n in names:
                    if "allocator" in n:  # a data symbol (the CUDA caching allocator pointer)
                        f.write(f"void *{n} = 0;\n")
                    else:  # functions: return 0 (the load-time CUDA registrations ignore it)
                        f.write(f"void *{n}(void) {{ return 0; }}\n")
            cmd = ["gcc", "-shared", "-fPIC", "-o", os.path.join(out_dir, soname), src, f"-Wl,-soname,{soname}"]
            if version_node:
                vs = os.path.join(tmp, soname + ".map")
                with open(vs, "w") as f:
                    f.write(f"{version_node} {{ global: *; }};\n")
                cmd.append(f"-Wl,--version-script={vs}")
            subprocess.run(cmd, check=True)

        compile_lib("libc10_cuda.so", plain)
        compile_lib("libtorch_cuda.so", [])
        compile_lib("libcudart.so.13", cudart, "libcudart.so.13")
    env = dict(os.environ, LD_LIBRARY_PATH=out_dir + os.pathsep + os.environ.get("LD_LIBRARY_PATH", ""))
    if not torchvision_imports(venv, env):
        raise SystemExit("torchvision still does not import with the shim; install a torchvision matching torch")
    return out_dir


if __name__ == "__main__":
    folder = build(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(sys.executable)))
    print(f"shim built in {folder}" if folder else "torchvision imports as it is: no shim needed")
