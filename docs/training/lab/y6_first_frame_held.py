"""Y6: T2AV's resync pass with the joint run's first latent frame held clean (as I2AV's pass holds the image), so
that a larger share can re-time the motion without re-drawing the scene. A prototype by patching: the joint run's
result is caught from `sampling._solve`, and the pass's `Job` gets its first frame. Then the Y2 grid:

    python docs/training/lab/y6_first_frame_held.py synccfg:resync=0.4 synccfg:resync=0.6 cfg:resync=0.4
"""
import os
import runpy
import sys

sys.path.insert(0, os.getcwd())
from harmony import sampling  # noqa: E402

_solve, _Job, caught = sampling._solve, sampling.Job, {}


def solve(zv, za, *args, **kw):
    out = _solve(zv, za, *args, **kw)
    if kw.get("done") == 0:
        caught["zv"] = out[0]  # the joint run's clean video
    return out


def job(clean_audio=None, clean_video=None, first_frame=None):
    if clean_audio is not None and first_frame is None and "zv" in caught:  # T2AV's pass
        first_frame = caught["zv"][:, :, :1]
    return _Job(clean_audio=clean_audio, clean_video=clean_video, first_frame=first_frame)


sampling._solve, sampling.Job = solve, job
sys.argv = [os.path.join(os.path.dirname(__file__), "y2_grid24.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
