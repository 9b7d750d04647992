"""The sampling defaults a user gets, pinned by value where they are defined (issue 22), and
every entrance (pipeline, CLI, node) shown to use those named defaults. The workflow templates
are checked against their generator elsewhere (tests/test_workflows.py); this holds even when
the templates are regenerated."""
import inspect

import pytest
import torch

from harmony import guidance, sampling
from harmony.pipeline import HarmonyPipeline

# the paper's values (shift 5, SyncCFG scales 3 / 2) and this project's choices (20 steps, DPM++ 2M)
SHIFT, SV, SA, STEPS, SOLVER = 5.0, 3.0, 2.0, 20, "dpmpp_2m"


def test_named_defaults_by_value():
    assert sampling.DEFAULT_SHIFT == SHIFT
    assert (guidance.DEFAULT_SV, guidance.DEFAULT_SA) == (SV, SA)
    assert sampling.DEFAULT_STEPS == STEPS
    assert sampling.DEFAULT_SOLVER == SOLVER and SOLVER in sampling.SOLVERS
    g = guidance.Guidance()
    assert (g.mode, g.sv, g.sa, g.text_cfg, g.st) == ("synccfg", SV, SA, 1.0, 0.0)  # st 0: no timing anchor
    assert guidance.DEFAULT_ST == 0.0 and guidance.EARLY_FRAMES == 3


def test_default_schedule_is_shifted_by_5_by_hand():
    """4 steps: linspace 1, .75, .5, .25, 0 shifted by 5 s / (1 + 4 s): 1, 15/16, 5/6, 5/8, 0."""
    want = torch.tensor([1.0, 15 / 16, 5 / 6, 5 / 8, 0.0], dtype=torch.float64)
    torch.testing.assert_close(sampling.sigma_schedule(4), want, atol=1e-12, rtol=0)


def _defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_pipeline_and_sampler_function_defaults():
    d = _defaults(HarmonyPipeline.sample)
    assert (d["steps"], d["solver"], d["guidance"], d["text_cfg"]) == (STEPS, SOLVER, "synccfg", 1.0)
    # None: the model file's tuned value for the job (jobs.tuned_settings), else the paper's
    assert (d["shift"], d["sv"], d["sa"], d["st"]) == (None, None, None, None)
    assert sampling.default_shift(None) == SHIFT and guidance.default_scales(None) == (SV, SA)
    assert guidance.default_timing(None) == 0.0
    d = _defaults(sampling.sample)
    assert (d["shift"], d["solver"]) == (SHIFT, SOLVER)


def test_cli_generate_defaults():
    from harmony.__main__ import generate_parser

    a = generate_parser().parse_args([])
    assert (a.steps, a.solver, a.guidance, a.text_cfg) == (STEPS, SOLVER, "synccfg", 1.0)
    assert (a.shift, a.sv, a.sa, a.st) == (None, None, None, None)  # None: the model file's, else the paper's
    assert guidance.default_scales(None) == (SV, SA)


def test_sampler_node_defaults():
    from nodes.sampler import HarmonySyncCFGSampler

    spec = HarmonySyncCFGSampler.INPUT_TYPES()
    req = {**spec["required"], "st": spec["optional"]["st"]}  # st optional: older graphs validate without it
    got = {k: req[k][1]["default"] for k in ("steps", "shift", "sv", "sa", "solver", "guidance", "text_cfg", "st")}
    assert got == {"steps": STEPS, "shift": SHIFT, "sv": SV, "sa": SA, "solver": SOLVER,
                   "guidance": "synccfg", "text_cfg": 1.0, "st": 0.0}


@pytest.mark.parametrize("field, value", [("shift", SHIFT), ("lambda_v", 0.1), ("lambda_a", 0.3),
                                          ("p_drop_text", 0.1)])
def test_training_defaults_of_the_paper(field, value):
    from harmony.train import TrainConfig

    assert getattr(TrainConfig(), field) == value
