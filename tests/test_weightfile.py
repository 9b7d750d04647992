"""harmony.weightfile, the one weight-file reader: safetensors and upstream .pth files read the same
way, wrappers unwrapped, every refusal one WeightFileError naming the input and the file."""
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from harmony import weightfile
from harmony.weightfile import WeightFileError, WeightFileNotFound, peek, read_header, read_state_dict

SD = {"conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "conv.bias": torch.tensor([1, 2], dtype=torch.int64)}


def _same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k])


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"state_dict": sd}, lambda sd: {"generator": sd},
                                  lambda sd: {"model": {"state_dict": sd}, "epoch": 7},
                                  lambda sd: {"module": sd, "step": 3}])
def test_a_pth_in_any_upstream_wrapper_reads_as_the_safetensors_file(tmp_path, wrap):
    save_file(SD, str(tmp_path / "w.safetensors"))
    torch.save(wrap(SD), tmp_path / "w.pth")
    _same(read_state_dict(tmp_path / "w.safetensors", "--x"), SD)
    _same(read_state_dict(tmp_path / "w.pth", "--x"), SD)
    _same(read_state_dict(wrap(SD), "--x"), SD)  # a state dict already in memory, same rule
    _same(read_state_dict(tmp_path / "w.pth", "--x", ["conv.bias"]), {"conv.bias": SD["conv.bias"]})
    _same(read_state_dict(tmp_path / "w.safetensors", "--x", ["conv.bias"]), {"conv.bias": SD["conv.bias"]})
    for p in ("w.safetensors", "w.pth"):  # names, shapes and dtypes, no weights
        meta = peek(tmp_path / p, "--x")
        assert {k: (tuple(v.shape), v.dtype, v.is_meta) for k, v in meta.items()} == \
            {"conv.weight": ((2, 3), torch.float32, True), "conv.bias": ((2,), torch.int64, True)}


def test_a_header_already_read_is_not_parsed_again(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_file(SD, str(path))
    header = read_header(path, "--x")
    monkeypatch.setattr(weightfile, "json", None)  # any second parse would fail
    assert read_header(header, "--x") is header
    _same(read_state_dict(header, "--x"), SD)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refusals_are_one_error_type_naming_the_input_and_the_file(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=2))
    with pytest.raises(WeightFileError, match=rf"^--vocoder {evil} was refused: torch.load\(weights_only=True\)") as e:
        read_state_dict(evil, "--vocoder")
    assert e.value.what == "--vocoder" and e.value.path == str(evil) and not marker.exists()
    empty = tmp_path / "empty.pth"
    torch.save({"state_dict": {"epoch": 3}}, empty)
    with pytest.raises(WeightFileError, match=r"^--vae .*empty\.pth contains no tensors \(top-level keys: \['epoch'\]\)"):
        read_state_dict(empty, "--vae")
    with pytest.raises(WeightFileError, match="is a folder; pass the weight file inside it"):
        read_state_dict(tmp_path, "--vae")
    with pytest.raises(WeightFileNotFound, match=r"^--vae not found: .*nope\.pth; the file people have is v1-16\.pth$") as e:
        read_state_dict(tmp_path / "nope.pth", "--vae", hint="the file people have is v1-16.pth")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, ValueError)
    with pytest.raises(WeightFileError, match="no tensors named \\['gone'\\]"):
        read_state_dict(SD, "--vae", ["gone"])
    # a model file (read_header) stays safetensors-only: a .pth is refused by name, never loaded
    torch.save(SD, tmp_path / "model.pth")
    with pytest.raises(WeightFileError, match=r"^--model .*model\.pth is not a safetensors file \(suffix '\.pth'\)"):
        read_header(tmp_path / "model.pth", "--model")
