"""Missing masks (seeded, nested, stored once) and parameter validation."""

import pandas as pd
import pytest

from r2scp_pipeline.experiment import EvaluateConfigError, check_parameters
from r2scp_pipeline.pipelines.evaluate.masks import draw_masks, mask_lookup
from r2scp_pipeline.pipelines.evaluate.nodes import (
    check_evaluate_parameters,
    draw_missing_masks,
)

IDS = [f"{i:08d}" for i in range(40)]
SETTINGS = ["audio_missing", "visual_missing", "complete"]


def _params(**over):
    p = {
        "split": "test",
        "settings": SETTINGS,
        "missing_rates": [0.3, 0.5, 0.7, 1.0],
        "methods": ["r2scp", "zero_fill", "no_cap"],
        "ablations": {"no_cap": {"model": {"use_cap": False}}},
        "paper_columns": "audio_visual",
        "batch_size": 8,
        "generative": {
            "d_model": 16,
            "layers": 1,
            "heads": 2,
            "dropout": 0.0,
            "epochs": 1,
            "batch_size": 4,
            "lr": 1e-3,
            "weight_decay": 0.0,
        },
        "sweep": {"enabled": False},
    }
    p.update(over)
    return p


def test_masks_are_nested_sized_and_seeded():
    m = draw_masks(IDS, SETTINGS, [0.3, 0.5, 0.7, 1.0], seed=3)
    assert list(m.columns) == ["setting", "missing_rate", "video_id", "missing"]
    sets = {
        r: {v for v, miss in mask_lookup(m, "audio_missing", r).items() if miss}
        for r in (0.3, 0.5, 0.7, 1.0)
    }
    assert [len(sets[r]) for r in (0.3, 0.5, 0.7, 1.0)] == [12, 20, 28, 40]
    assert sets[0.3] < sets[0.5] < sets[0.7] < sets[1.0]
    assert not any(mask_lookup(m, "complete", 0.0).values())
    # same seed -> identical; input order irrelevant; other seed -> different
    pd.testing.assert_frame_equal(m, draw_masks(IDS[::-1], SETTINGS[::-1], [1.0, 0.7, 0.5, 0.3], 3))
    assert not draw_masks(IDS, SETTINGS, [0.5], 4)["missing"].equals(
        draw_masks(IDS, SETTINGS, [0.5], 3)["missing"]
    )


def test_adding_a_rate_changes_no_other_rate():
    a = draw_masks(IDS, ["visual_missing"], [0.5], 1)
    b = draw_masks(IDS, ["visual_missing"], [0.2, 0.5, 0.9], 1)
    pd.testing.assert_frame_equal(a, b[b["missing_rate"] == 0.5].reset_index(drop=True))


def test_masks_node_uses_the_configured_split():
    vi = pd.DataFrame({"video_id": IDS + ["x1", "x2"], "split": ["test"] * 40 + ["train"] * 2})
    cfg = check_evaluate_parameters(_params(), seed=0)
    m = draw_missing_masks(cfg, vi)
    assert set(m["video_id"]) == set(IDS)
    with pytest.raises(ValueError, match="no video of split 'val'"):
        draw_missing_masks({**cfg, "split": "val"}, vi)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"missing_rates": [0.3, 1.2]}, r"outside \[0, 1\]"),
        ({"missing_rates": [-0.1]}, r"outside \[0, 1\]"),
        ({"missing_rates": ["half"]}, r"outside \[0, 1\]"),
        ({"methods": ["r2scp", "magic"]}, "unknown methods \\['magic'\\]"),
        ({"methods": ["no_stage1"]}, "unknown methods"),  # not defined under ablations
        ({"ablations": {"x": {"model": {"use_magic": True}}}}, "unknown model parameters"),
        ({"ablations": {"x": {"train": {}}}}, "unknown keys \\['train'\\]"),
        ({"ablations": {"x": {"description": "nothing"}}}, "changes nothing"),
        ({"report": {"table_missing_rate": 0.9}}, "table_missing_rate"),
        ({"settings": ["video_missing"]}, "unknown settings"),
        ({"paper_columns": "macro"}, "paper_columns"),
        ({"methods": ["generative"], "generative": {"d_model": 0}}, "generative.d_model"),
        ({"sweep": {"enabled": True, "n": [0], "k": [3]}}, "sweep.n"),
        ({"ablations": {"no_magic": {"model": {"use_cap": False}}}}, "not among the variants"),
        ({"seeds": [1, 1]}, "evaluate.seeds \\[1, 1\\] has duplicates"),
        ({"seeds": ["a"]}, "evaluate.seeds=\\['a'\\] must be a list of integers"),
    ],
)
def test_bad_parameters_stop_with_a_clear_error(over, match):
    with pytest.raises(EvaluateConfigError, match=match):
        check_parameters(_params(**over), seed=0)


def test_good_parameters_and_runs():
    cfg = check_parameters(_params(), seed=0)
    assert cfg.ablation_methods == ("no_cap",)
    assert cfg.seeds == (0,)  # null: [seed]
    assert check_parameters(_params(seeds=[5, 6]), seed=0).seeds == (5, 6)
    assert cfg.runs()[-1] == ("complete", 0.0)
    assert len(cfg.runs()) == 9


def test_all_ablations_switch_adds_every_defined_ablation():
    abl = {"no_cap": {"model": {"use_cap": False}}, "no_mixing": {"model": {"mixing": False}}}
    cfg = check_parameters(
        _params(methods=["r2scp", "no_cap"], ablations=abl, all_ablations=True), seed=0
    )
    assert cfg.methods == ("r2scp", "no_cap", "no_mixing")
    with pytest.raises(EvaluateConfigError, match="all_ablations"):
        check_parameters(_params(all_ablations="yes"), seed=0)
