"""Block swap and CPU offload give exactly the resident model's output."""
import pytest
import torch

from harmony.checkpoint import load_model, save_model
from harmony.offload import BlockSwap, cpu_offload, layer_modules
from test_checkpoint import run, tiny_inputs, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def inputs(model):
    return tiny_inputs(model.cfg)


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("resident", [0, 1, 2])
@pytest.mark.parametrize("prefetch", [True, False])
def test_block_swap_matches_resident(model, inputs, resident, prefetch):
    ref = run(model, inputs)
    swap = BlockSwap(model, resident_blocks=resident, device="cpu", prefetch=prefetch)
    seen = []
    inner = model.layer_hook
    model.layer_hook = lambda i: (inner(i), seen.append((i, swap.on_device_layers())))
    try:
        assert same(run(model, inputs), ref)
        assert same(run(model, inputs), ref)  # a second call starts from a clean state
    finally:
        model.layer_hook = inner
    n = model.num_layers
    assert [i for i, _ in seen] == list(range(n)) * 2
    for i, on_device in seen:
        if i >= resident:
            assert i in on_device  # the layer about to run is loaded
        allowed = {i, i + 1} if prefetch else {i}
        assert set(on_device) <= allowed  # earlier layers went back to the CPU
    assert swap.on_device_layers() == []  # nothing left loaded after the call
    assert swap.loads == 2 * (n - resident)  # each swapped layer copied in once per call
    swap.remove()
    assert model.layer_hook is None
    assert same(run(model, inputs), ref)


def test_layer_modules_are_both_towers(model):
    mods = layer_modules(model, 1)
    assert mods == [model.video_model.blocks[1], model.audio_model.blocks[1]]


def test_block_swap_rejects_bad_count(model):
    with pytest.raises(ValueError, match="resident_blocks must be an integer in 0..4"):
        BlockSwap(model, resident_blocks=9, device="cpu")


def test_block_swap_with_fp8_weights(model, inputs, tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    fp8 = load_model(path, dtype="fp8_e4m3fn")
    ref = run(fp8, inputs)
    swap = BlockSwap(fp8, resident_blocks=1, device="cpu")
    assert same(run(fp8, inputs), ref)
    assert fp8.video_model.blocks[2].self_attn.q.weight.dtype == torch.float8_e4m3fn
    swap.remove()


def test_cpu_offload_matches_resident(model, inputs):
    ref = run(model, inputs)
    with cpu_offload(model, "cpu") as offload:
        assert same(run(model, inputs), ref)
        assert not offload.on_device and offload.loads == 1
        with offload.loaded():
            assert offload.on_device
            assert same(run(model, inputs), ref)
            assert same(run(model, inputs), ref)
        assert not offload.on_device and offload.loads == 2  # one copy for the whole block
    assert same(run(model, inputs), ref)
