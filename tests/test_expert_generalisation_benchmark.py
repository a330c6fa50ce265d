"""``benchmarks/expert_generalisation.py`` scores a stage-I checkpoint's answers and grounding
per split from a run's data folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.training import model_checkpoint, train_stage_one
from tests.synthetic import make_synthetic_tables
from tests.test_grounding import LOOP, MODEL, _labels, _tagged

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "expert_generalisation", ROOT / "benchmarks/expert_generalisation.py"
)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_grounding_scores_count_tags_above_one_half():
    logits = torch.tensor([[[2.0, -1.0, 3.0]], [[-2.0, -1.0, -3.0]]])  # [2, 1, 3]
    labels = torch.tensor([[[1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0]]])
    s = bench.grounding_scores(logits, labels)
    assert s == {"precision": 0.5, "recall": 0.5, "exact_set": 0.5}


def test_the_benchmark_scores_every_split_from_a_data_folder(tmp_path):
    tables = make_synthetic_tables(n_videos=30, seed=5, visual_tokens=2)
    labels = _tagged(_labels(tables))  # with loud / rhythmic tags: presence alone is scored
    tens = build_tensors(**tables, grounding_labels=labels)
    model, _ = train_stage_one(tens, MODEL, {**LOOP, "epochs": 1, "grounding_weight": 1.0,
                                             "grounding_attributes": True}, {}, seed=0)  # fmt: skip
    assert model.cfg.grounding_attributes == 2
    data = tmp_path / "data"
    for folder, name in (("02_intermediate", "qa_pairs"), ("04_feature", "audio_features"),
                         ("04_feature", "visual_features"), ("04_feature", "question_features")):  # fmt: skip
        (data / folder).mkdir(parents=True, exist_ok=True)
        tables[name].to_parquet(data / folder / f"{name}.parquet")
    labels.to_parquet(data / "04_feature/grounding_labels.parquet")
    (data / "06_models").mkdir()
    torch.save(model_checkpoint(model, {}), data / "06_models/stage1_experts.pt")
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(data), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["answers"]) == {"train", "val", "test"}
    for split, acc in r["answers"].items():
        assert acc["questions"] == len(tens.indices(split))
        assert {"audio", "visual", "text", "average of the three"} <= set(acc)
        for m in ("audio", "visual"):
            assert set(r["grounding"][split][m]) == {"precision", "recall", "exact_set"}
    (data / "04_feature/grounding_labels.parquet").unlink()
    with pytest.raises(SystemExit, match="grounding_labels.parquet is missing"):
        bench.main(["--data", str(data)])
