"""Block swap and CPU offload: the weights really move (observed on the CPU) and outputs equal the resident model's.

Every device copy is a real copy, also on the CPU, so these tests see where each
layer's weights are before, during and after its turn, and count the copies.
"""
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


def _layer_tensors(model, i):
    return [t for m in layer_modules(model, i) for t in list(m.parameters()) + list(m.buffers())]


@pytest.mark.parametrize("resident", [0, 1, 2, 4])
@pytest.mark.parametrize("prefetch", [True, False])
def test_block_swap_moves_exactly_the_swapped_layers(model, inputs, resident, prefetch):
    n = model.num_layers
    ref = run(model, inputs)
    home = {i: [t.data_ptr() for t in _layer_tensors(model, i)] for i in range(n)}
    per_layer = {i: (len(home[i]), sum(t.numel() * t.element_size() for t in _layer_tensors(model, i)))
                 for i in range(n)}
    transfers = []

    def transfer(t, device, non_blocking=False):
        transfers.append(t.data_ptr())
        return t.to(device, copy=True)

    swap = BlockSwap(model, resident_blocks=resident, device="cpu", prefetch=prefetch, transfer=transfer)
    before_turn, during_turn = [], []
    inner = model.layer_hook
    model.layer_hook = lambda i: (inner(i), before_turn.append((i, [swap.where(j) for j in range(n)])))

    def during(i):
        def hook(block, _args):
            own = [t.data_ptr() for t in _layer_tensors(model, i)]
            moved = [a != b for a, b in zip(own, home[i])]
            during_turn.append((i, all(moved) if i >= resident else not any(moved)))
        return hook

    handles = [model.video_model.blocks[i].self_attn.register_forward_pre_hook(during(i)) for i in range(n)]
    try:
        assert [swap.where(i) for i in range(n)] == ["resident"] * resident + ["host"] * (n - resident)
        assert same(run(model, inputs), ref)
        assert same(run(model, inputs), ref)  # a second call starts from a clean state
    finally:
        model.layer_hook = inner
        for h in handles:
            h.remove()
    # before layer i runs (its hook): i is on the device (a copy), earlier swapped layers went home,
    # only i and (with prefetch) i+1 are on the device; resident layers never move
    assert [i for i, _ in before_turn] == list(range(n)) * 2
    for i, where in before_turn:
        for j, w in enumerate(where):
            if j < resident:
                assert w == "resident"
            elif j == i or (prefetch and j == i + 1):
                assert w == "device", (i, j, where)
            else:
                assert w == "host", (i, j, where)
    # during its turn the block computes on copies (swapped) or its own weights (resident)
    assert during_turn == [(i, True) for i in range(n)] * 2
    # after the call everything is back home, the masters are the original tensors
    assert [swap.where(i) for i in range(n)] == ["resident"] * resident + ["host"] * (n - resident)
    assert all([t.data_ptr() for t in _layer_tensors(model, i)] == home[i] for i in range(n))
    # exactly the swapped layers' tensors were copied, once per call each, from their masters
    swapped = range(resident, n)
    assert swap.loads == 2 * len(swapped)
    assert swap.copies == len(transfers) == 2 * sum(per_layer[i][0] for i in swapped)
    assert swap.bytes_copied == 2 * sum(per_layer[i][1] for i in swapped)
    assert sorted(transfers) == sorted(2 * [p for i in swapped for p in home[i]])
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
    n_tensors = len(list(model.parameters())) + len(list(model.buffers()))
    home = model.video_model.blocks[0].self_attn.q.weight.data_ptr()
    seen = []
    with cpu_offload(model, "cpu") as offload:
        model.layer_hook = lambda i: seen.append(model.video_model.blocks[0].self_attn.q.weight.data_ptr())
        try:
            assert same(run(model, inputs), ref)
        finally:
            model.layer_hook = None
        assert seen and home not in seen  # the forward ran on a copy
        assert model.video_model.blocks[0].self_attn.q.weight.data_ptr() == home  # and dropped it after
        assert offload.copies == n_tensors
        assert not offload.on_device and offload.loads == 1
        with offload.loaded():
            assert offload.on_device
            assert same(run(model, inputs), ref)
            assert same(run(model, inputs), ref)
        assert not offload.on_device and offload.loads == 2  # one copy for the whole block
    assert same(run(model, inputs), ref)
