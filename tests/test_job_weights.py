"""Job weights: a job's own tensors are used while that job samples, and nowhere else."""
import os

import pytest
import torch

from harmony.__main__ import main as harmony_main
from harmony.checkpoint import CheckpointError, load_model, save_model, write_job_file
from harmony.config import get_config
from harmony.families import detect
from harmony.conditioner import Conditioner
from harmony.job_weights import job_key, job_weights, split_keys
from harmony.jobs import Job
from harmony.model import Conditioning, HarmonyModel
from harmony.sampling import Guidance, sample
from harmony.train_state import export_default, init_from_file
from harmony.weightfile import read_safetensors, save_safetensors
from test_sampling import _tiny_inputs

# the fine-tune "trained" two tensors of audio block 0; a third change (video block 0) is outside
# the --only expression, as a frozen tensor whose EMA drifted by rounding would be
TRAINED = ("audio_model.blocks.0.self_attn.q.weight", "audio_model.blocks.0.ffn.0.bias")
OUTSIDE = "video_model.blocks.0.self_attn.q.weight"
ONLY = r"audio_model\.blocks\."


def _export(model, cond, path):
    ema = {f"model.{k}": v for k, v in model.state_dict().items()}
    ema.update({f"text.{k}": v for k, v in cond.state_dict().items()})
    export_default(ema, model.cfg, str(path), step=3, dtype="fp32")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("jobs")
    cfg = get_config("tiny")
    torch.manual_seed(0)
    shared, cond = HarmonyModel(cfg).eval(), Conditioner(cfg)
    tuned = HarmonyModel(cfg).eval()
    tuned.load_state_dict(shared.state_dict())
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name in TRAINED + (OUTSIDE,):
            p = tuned.get_parameter(name)
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    paths = {"shared": _export(shared, cond, d / "shared.safetensors"),
             "tuned": _export(tuned, cond, d / "tuned.safetensors")}
    counts = write_job_file(paths["shared"], str(d / "jobs.safetensors"), {"V2A": paths["tuned"]}, ONLY)
    assert counts == {"V2A": len(TRAINED)}
    paths["jobs"] = str(d / "jobs.safetensors")
    # what V2A should compute with: the shared weights and the trained tensors only
    expect = HarmonyModel(cfg).eval()
    expect.load_state_dict(shared.state_dict())
    with torch.no_grad():
        for name in TRAINED:
            expect.get_parameter(name).copy_(tuned.get_parameter(name))
    paths["v2a_model"] = expect
    return paths


def _inputs(cfg, seed=1):
    zv, za, cond, _ = _tiny_inputs(cfg, seed)  # the sampling tests' latents and text contexts
    return zv, za, cond


def _forward(model, seed=1):
    zv, za, cond = _inputs(model.cfg, seed)
    with torch.no_grad():
        return model(zv, za, torch.full((1,), 0.0), torch.full((1,), 700.0), cond)


def test_file_holds_only_the_trained_tensors_under_the_job_prefix(files):
    tensors, meta = read_safetensors(files["jobs"])
    shared, jobs = split_keys(tensors)
    assert sorted(jobs["V2A"]) == sorted(TRAINED)
    assert job_key("V2A", OUTSIDE) not in tensors  # outside --only: not stored
    assert meta["job_weights"] == f"V2A:{len(TRAINED)}"
    base, _ = read_safetensors(files["shared"])
    assert all(torch.equal(tensors[k], base[k]) for k in shared)  # the shared tensors are the shared file's
    found, plain = detect(files["jobs"]), detect(files["shared"])  # what the loader node says of the file
    assert found.params == plain.params and found.tensors == plain.tensors
    assert f"own weights for V2A ({len(TRAINED)} tensors)" in found.line()


def test_the_job_computes_with_its_own_tensors_and_the_others_with_the_shared(files):
    model, shared = load_model(files["jobs"]), load_model(files["shared"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with job_weights(model, "V2A"):
        got = _forward(model)
    want = _forward(files["v2a_model"])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(got[1], _forward(shared)[1])  # the trained tensors change the audio
    for job in ("T2AV", "I2AV", "A2V"):  # no weights of their own: the shared weights, bit for bit
        with job_weights(model, job):
            torch.testing.assert_close(_forward(model), _forward(shared), rtol=0, atol=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # put back


def test_shared_weights_come_back_after_an_error(files):
    model = load_model(files["jobs"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        with job_weights(model, "V2A"):
            assert not torch.equal(model.get_parameter(TRAINED[0]), before[TRAINED[0]])
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_sampling_picks_the_weights_by_the_job(files):
    model, shared = load_model(files["jobs"]), load_model(files["shared"])
    cfg = model.cfg
    zv, za, cond = _inputs(cfg, seed=3)
    run = dict(steps=2, guidance=Guidance("none"))
    v2a = Job(clean_video=torch.randn(zv.shape, generator=torch.Generator().manual_seed(4)))
    got = sample(model, cond, zv, za, job=v2a, **run)
    want = sample(files["v2a_model"], cond, zv, za, job=v2a, **run)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
    got = sample(model, cond, zv, za, job=Job(), **run)  # T2AV: shared
    want = sample(shared, cond, zv, za, job=Job(), **run)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_fp8_storage_converts_the_job_tensors_like_the_shared_ones(files):
    model = load_model(files["jobs"], dtype="fp8_e4m3fn")
    own = model.job_tensors["V2A"]
    assert own[TRAINED[0]].dtype == torch.float8_e4m3fn and TRAINED[0].replace("weight", "scale_weight") in own
    assert own[TRAINED[1]].dtype == torch.float32  # a bias is not quantised
    expect = HarmonyModel(model.cfg).eval()
    expect.load_state_dict(files["v2a_model"].state_dict())
    path = files["jobs"].replace("jobs.safetensors", "expect.safetensors")
    save_model(expect, path)
    ref = load_model(path, dtype="fp8_e4m3fn")
    with job_weights(model, "V2A"):
        torch.testing.assert_close(_forward(model), _forward(ref), rtol=0, atol=0)


def test_save_model_keeps_the_job_tensors(files, tmp_path):
    model = load_model(files["jobs"])
    save_model(model, tmp_path / "again.safetensors")
    again = load_model(tmp_path / "again.safetensors")
    assert sorted(again.job_tensors["V2A"]) == sorted(TRAINED)
    with job_weights(again, "V2A"):
        torch.testing.assert_close(_forward(again), _forward(files["v2a_model"]), rtol=0, atol=0)


def test_block_swap_says_the_job_weights_are_not_used(files):
    model, said = load_model(files["jobs"]), []
    model.layer_hook = lambda i: None
    with job_weights(model, "V2A", said.append):
        assert torch.equal(model.get_parameter(TRAINED[0]), load_model(files["shared"]).get_parameter(TRAINED[0]))
    assert said and "not used under block swap" in said[0]


def test_init_job_starts_a_fine_tune_from_the_job_weights(files):
    cfg = get_config("tiny")
    model, cond = HarmonyModel(cfg), Conditioner(cfg)
    init_from_file(files["jobs"], model, cond, cfg, job="V2A")
    assert torch.equal(model.get_parameter(TRAINED[0]), files["v2a_model"].get_parameter(TRAINED[0]))
    init_from_file(files["jobs"], model, cond, cfg)  # default: the shared weights
    assert torch.equal(model.get_parameter(TRAINED[0]), load_model(files["shared"]).get_parameter(TRAINED[0]))
    with pytest.raises(ValueError, match="no weights of its own for A2V"):
        init_from_file(files["jobs"], model, cond, cfg, job="A2V")


def test_bad_job_files_are_named(files, tmp_path):
    tensors, meta = read_safetensors(files["jobs"])
    cases = {
        "unknown job": ({**tensors, "jobs.X2Y.audio_model.head.head.weight": tensors["audio_model.head.head.weight"].clone()},
                        ValueError, "jobs.<JOB>"),
        "no such tensor": ({**tensors, "jobs.A2V.video_model.nothing.weight": torch.zeros(2)},
                           CheckpointError, "name no tensor"),
        "wrong shape": ({**tensors, job_key("A2V", OUTSIDE): torch.zeros(3, 3)}, CheckpointError, "shape"),
    }
    for name, (bad, err, match) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        save_safetensors(bad, path, meta)
        with pytest.raises(err, match=match):
            load_model(path)
    with pytest.raises(ValueError, match="already holds job weights"):
        write_job_file(files["jobs"], str(tmp_path / "x.safetensors"), {"V2A": files["shared"]}, ONLY)
    with pytest.raises(ValueError, match="no tensor matching"):
        write_job_file(files["shared"], str(tmp_path / "x.safetensors"), {"V2A": files["shared"]}, ONLY)
    assert not (tmp_path / "x.safetensors").exists()


def test_a_fine_tune_that_changed_the_text_encoder_is_refused(files, tmp_path):
    text, meta = read_safetensors(files["tuned"].replace(".safetensors", ".text.safetensors"))
    key = next(iter(text))
    text[key] = text[key] + 1
    tuned, tmeta = read_safetensors(files["tuned"])
    save_safetensors(tuned, tmp_path / "t.safetensors", tmeta)
    save_safetensors(text, tmp_path / "t.text.safetensors", meta)
    with pytest.raises(ValueError, match="changed the text encoder"):
        write_job_file(files["shared"], str(tmp_path / "x.safetensors"), {"V2A": str(tmp_path / "t.safetensors")}, ONLY)


def test_cli_names_a_bad_job_argument(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        harmony_main(["job-weights", files["shared"], str(tmp_path / "x.safetensors"), "--job", "V2X=" + files["tuned"],
                      "--only", ONLY])
    assert e.value.code == 2 and "JOB=FILE" in capsys.readouterr().err
    harmony_main(["job-weights", files["shared"], str(tmp_path / "x.safetensors"), "--job", "V2A=" + files["tuned"],
                  "--only", ONLY])
    assert "V2A 2 tensors" in capsys.readouterr().out
    assert (tmp_path / "x.text.safetensors").is_file()


def test_jobs_from_copies_another_files_job_tensors_onto_new_shared_weights(files, tmp_path, capsys):
    # a move to a new codec: the new shared weights (here: the tuned file, whose video block 0 differs),
    # with the jobs' own tensors copied from the file that had them, bit for bit
    out = str(tmp_path / "moved.safetensors")
    assert write_job_file(files["tuned"], out, {}, jobs_from=files["jobs"]) == {"V2A": len(TRAINED)}
    got, _ = read_safetensors(out)
    had, _ = read_safetensors(files["jobs"])
    new_shared, _ = read_safetensors(files["tuned"])
    assert {k for k in got if k.startswith("jobs.")} == {job_key("V2A", n) for n in TRAINED}
    for name in TRAINED:
        assert torch.equal(got[job_key("V2A", name)], had[job_key("V2A", name)])
    assert all(torch.equal(got[k], v) for k, v in new_shared.items())  # the shared weights are the new ones
    # --only filters what is copied; a file without job tensors, or of another shape, is refused
    assert write_job_file(files["tuned"], out, {}, only=r"\.q\.weight$", jobs_from=files["jobs"]) == {"V2A": 1}
    with pytest.raises(ValueError, match="holds no job tensors"):
        write_job_file(files["tuned"], str(tmp_path / "x.safetensors"), {}, jobs_from=files["shared"])
    bad, meta = read_safetensors(files["jobs"])
    bad[job_key("V2A", TRAINED[0])] = torch.zeros(3, 3)
    save_safetensors(bad, tmp_path / "bad.safetensors", meta)
    with pytest.raises(ValueError, match="no tensor of its shape"):
        write_job_file(files["tuned"], str(tmp_path / "x.safetensors"), {}, jobs_from=str(tmp_path / "bad.safetensors"))
    assert not (tmp_path / "x.safetensors").exists()
    harmony_main(["job-weights", files["tuned"], str(tmp_path / "cli.safetensors"), "--jobs-from", files["jobs"]])
    assert "V2A 2 tensors" in capsys.readouterr().out


def test_only_per_job_keeps_what_each_job_trained(files, tmp_path, capsys):
    # the tuned file differs in audio block 0 (TRAINED) and video block 0 (OUTSIDE): V2A keeps its audio
    # tensors, I2AV (the same file standing in for a video fine-tune) its video tensor, each job only its own
    out = str(tmp_path / "two.safetensors")
    counts = write_job_file(files["shared"], out, {"V2A": files["tuned"], "I2AV": files["tuned"]},
                            {"V2A": ONLY, "I2AV": r"video_model\.blocks\."})
    assert counts == {"V2A": len(TRAINED), "I2AV": 1}
    got, _ = read_safetensors(out)
    assert {k for k in got if k.startswith("jobs.")} == (
        {job_key("V2A", n) for n in TRAINED} | {job_key("I2AV", OUTSIDE)})
    # a job not named takes the "" entry; the CLI spells it JOB=REGEX, a bare REGEX for every job
    assert write_job_file(files["shared"], out, {"V2A": files["tuned"]}, {"": ONLY, "I2AV": "x"}) == {"V2A": 2}
    harmony_main(["job-weights", files["shared"], out, "--job", "V2A=" + files["tuned"], "--job",
                  "I2AV=" + files["tuned"], "--only", "V2A=" + ONLY, "--only", r"I2AV=video_model\.blocks\."])
    assert "V2A 2 tensors, I2AV 1 tensors" in capsys.readouterr().out
    for bad in (["--only", ONLY, "--only", ONLY], ["--only", "V2A=("]):
        with pytest.raises(SystemExit) as e:
            harmony_main(["job-weights", files["shared"], str(tmp_path / "x.safetensors"), "--job",
                          "V2A=" + files["tuned"], *bad])
        assert e.value.code == 2 and "--only" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_the_partner_probe_reads_each_setting_with_its_job_weights(files):
    from harmony.probe import partner_gains

    model, shared = load_model(files["jobs"]), load_model(files["shared"])
    g = torch.Generator().manual_seed(9)
    cfg = model.cfg
    v0, a0 = torch.randn(2, cfg.video.in_dim, 2, 4, 4, generator=g), torch.randn(2, 6, cfg.audio.in_dim, generator=g)
    cond = Conditioning(torch.randn(2, 8, cfg.video.text_dim, generator=g), torch.randn(2, 9, cfg.audio.text_dim, generator=g))
    other = torch.tensor([1, 0])
    got = partner_gains(model, v0, a0, cond, other, sigmas=(0.6,))
    as_v2a = partner_gains(files["v2a_model"], v0, a0, cond, other, sigmas=(0.6,))
    as_shared = partner_gains(shared, v0, a0, cond, other, sigmas=(0.6,))
    assert got["V2A"] == as_v2a["V2A"] and got["V2A"] != as_shared["V2A"]
    assert got["joint"] == as_shared["joint"] and got["A2V"] == as_shared["A2V"]


def test_full_cpu_offload_samples_with_the_job_weights(files):
    """The pipeline keeps an offloaded model loaded for a whole run (``offload.loaded()``): the swap
    happens on the loaded layers, so the job's tensors are used, and the CPU masters stay shared."""
    from harmony.offload import cpu_offload

    model = load_model(files["jobs"])
    zv, za, cond = _inputs(model.cfg, seed=3)
    v2a = Job(clean_video=torch.randn(zv.shape, generator=torch.Generator().manual_seed(4)))
    run = dict(steps=2, guidance=Guidance("none"), job=v2a)
    want = sample(files["v2a_model"], cond, zv, za, **run)
    with cpu_offload(model, "cpu") as offload:
        with offload.loaded():
            got = sample(model, cond, zv, za, **run)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    shared = load_model(files["shared"])
    assert torch.equal(model.get_parameter(TRAINED[0]), shared.get_parameter(TRAINED[0]))


def test_a_model_cast_after_loading_gets_its_job_tensors_in_the_same_dtype(files):
    model = load_model(files["jobs"]).to(torch.float64)
    with job_weights(model, "V2A"):
        p = model.get_parameter(TRAINED[0])
        assert p.dtype == torch.float64
        assert torch.equal(p, files["v2a_model"].get_parameter(TRAINED[0]).double())
    assert model.job_tensors["V2A"][TRAINED[0]].dtype == torch.float32  # the stored copy is untouched


def test_tuned_settings_are_recorded_per_job_and_bad_ones_named(files, tmp_path, capsys):
    from harmony.checkpoint import read_config
    from harmony.guidance import default_scales, default_timing
    from harmony.sampling import default_shift

    out = str(tmp_path / "scales.safetensors")
    harmony_main(["job-weights", files["shared"], out, "--tuned", "I2AV:sv=2", "--tuned", "V2A:sa=4.5,sv=1,shift=2",
                  "--tuned", "A2V:st=1.5"])
    assert "I2AV tuned {'sv': 2.0}" in capsys.readouterr().out
    cfg = read_config(out)
    assert default_scales(cfg, "I2AV") == (2.0, 2.0) and default_scales(cfg, "V2A") == (1.0, 4.5)
    assert default_shift(cfg, "V2A") == 2.0 and default_shift(cfg, "I2AV") == default_shift(cfg) == 5.0
    assert default_scales(cfg, "T2AV") == default_scales(cfg) == (3.0, 2.0)
    assert default_timing(cfg, "A2V") == 1.5 and default_timing(cfg, "V2A") == default_timing(cfg) == 0.0
    tensors, _ = read_safetensors(out, "scales")
    assert not split_keys(tensors)[1]  # scales alone add no job tensors
    for bad in ("I2AV", "I2AV:sv=x", "I2AV:sv=-1", "I2AV:cfg=2", "I2X:sv=2", "I2AV:sv=2,", "I2AV:sv=inf",
                "A2V:shift=0", "A2V:st=-1"):
        with pytest.raises(SystemExit) as e:
            harmony_main(["job-weights", files["shared"], str(tmp_path / "bad.safetensors"), "--tuned", bad])
        assert e.value.code == 2 and "JOB:KEY=X" in capsys.readouterr().err, bad
    with pytest.raises(SystemExit):
        harmony_main(["job-weights", files["shared"], str(tmp_path / "none.safetensors")])
    assert "at least one" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists() and not (tmp_path / "none.safetensors").exists()


def _blend_script():
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("blend_weights", os.path.join(root, "scripts", "blend_weights.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_blend_weights_mixes_the_matched_tensors_and_keeps_b_for_the_rest(tmp_path):
    """scripts/blend_weights.py (WiSE-FT): w * A + (1 - w) * B on the --only tensors, in B's dtype; B's others and
    its metadata and text file as they are; a mismatched tensor or a weight outside [0, 1] is refused."""
    from harmony.weightfile import read_header, read_state_dict, save_safetensors
    mod = _blend_script()
    a = {"video_model.blocks.0.w": torch.full((2, 3), 4.0, dtype=torch.float16), "head.w": torch.zeros(2)}
    b = {"video_model.blocks.0.w": torch.full((2, 3), 1.0, dtype=torch.float16), "head.w": torch.ones(2)}
    pa, pb, out = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "o" / "blend.safetensors"
    save_safetensors(a, pa)
    save_safetensors(b, pb, {"harmony_config": "{}"})
    save_safetensors({"t": torch.arange(3.0)}, tmp_path / "b.text.safetensors")
    mod.main([str(pa), str(pb), str(out), "--weight", "0.25", "--only", r"video_model\.blocks\."])
    got = read_state_dict(str(out))
    assert got["video_model.blocks.0.w"].dtype == torch.float16
    assert torch.equal(got["video_model.blocks.0.w"], torch.full((2, 3), 0.25 * 4 + 0.75 * 1, dtype=torch.float16))
    assert torch.equal(got["head.w"], torch.ones(2)) and read_header(str(out)).metadata == {"harmony_config": "{}"}
    assert torch.equal(read_state_dict(str(tmp_path / "o" / "blend.text.safetensors"))["t"], torch.arange(3.0))
    with pytest.raises(ValueError, match="between 0 and 1"):
        mod.blend(a, b, 1.5)
    with pytest.raises(ValueError, match="shape"):
        mod.blend({"head.w": torch.zeros(3)}, b, 0.5, r"head\.")
    with pytest.raises(ValueError, match="matches no tensor"):
        mod.blend(a, b, 0.5, "nothing")
