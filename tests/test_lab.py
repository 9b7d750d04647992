"""harmony.lab: the lab's train arguments and its curve."""
import json

import pytest

from harmony.lab import LAB_DEFAULTS, plot_curve, with_lab_defaults


def test_lab_defaults_yield_to_the_callers_train_options():
    argv = with_lab_defaults(["--lr", "3e-3", "--split", "ambient"], "x", 4.0, "runs/lab")
    assert argv.count("--lr") == 1 and argv[argv.index("--lr") + 1] == "3e-3"
    assert argv[argv.index("--batch") + 1] == LAB_DEFAULTS["batch"]
    assert argv[-4:] == ["--max-minutes", "4.0", "--out", "runs/lab/x"]
    with pytest.raises(ValueError, match="--out"):
        with_lab_defaults(["--out", "elsewhere"], "x", 4.0, "runs/lab")


def test_curve_is_drawn_from_the_probe_lines(tmp_path):
    pytest.importorskip("matplotlib")
    row = lambda step, g: {"step": step, "wall_s": 60.0 * step, "cpu_s": 1.0,  # noqa: E731
                           **{k: {"0.3": g, "0.6": g, "0.9": g, "mean": g} for k in ("V2A", "A2V", "I2AV")}}
    (tmp_path / "probe.jsonl").write_text("\n".join(json.dumps(row(i, 1 + i / 10)) for i in range(3)))
    out = plot_curve(str(tmp_path))
    assert out.endswith("curve.png") and (tmp_path / "curve.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="probe-every"):
        plot_curve(str(tmp_path / "missing"))
