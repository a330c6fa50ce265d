"""``benchmarks/real_scale.py`` writes official-format annotations that ingest with the counts
it reports, with videos shared between splits like the real files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from r2scp_pipeline import avqa
from r2scp_pipeline.pipelines.dataset.nodes import generate_embedded_dataset, ingest_annotations

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("real_scale", ROOT / "benchmarks/real_scale.py")
real_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(real_scale)


def test_annotations_at_a_small_scale_ingest_with_shared_videos(tmp_path):
    rng = np.random.default_rng(0)
    plan = real_scale.plan_splits(0.01, rng)
    counts = real_scale.write_annotations(tmp_path, plan, rng)
    assert counts["videos"] == 93 and counts["train"]["questions"] == 322
    assert counts["val"] == {"questions": 46, "videos": 38}
    assert counts["test"] == {"questions": 91, "videos": 64}
    assert counts["val_and_test_videos"] == 23
    params = {"source": "music_avqa", "protocol": None, "embedded": {"root": "unused"},
              "music_avqa": {"annotations_dir": str(tmp_path), "media_dir": None}}  # fmt: skip
    qa, index, _, _, report = ingest_annotations(params, generate_embedded_dataset(params, 0))
    assert report["protocol"] == "official"
    assert qa["split"].value_counts().to_dict() == {"train": 322, "test": 91, "val": 46}
    assert index["in_train"].all() and int(index["in_val"].sum()) == 38
    assert int((index["in_val"] & index["in_test"]).sum()) == 23
    assert set(qa["template"]) <= {t[2] for t in avqa.TEMPLATES}
    assert qa["question_id"].is_unique


def test_avqa_size_annotations_ingest_as_multiple_choice(tmp_path):
    rng = np.random.default_rng(0)
    plan = real_scale.plan_avqa(0.002, rng)
    counts = real_scale.write_avqa_annotations(tmp_path, plan, rng)
    assert counts["videos"] == 114
    assert counts["train_qa.json"]["questions"] + counts["val_qa.json"]["questions"] == 115
    assert counts["val_qa.json"]["videos"] == 34  # test_fraction of the videos
    params = {"source": "avqa", "protocol": None,
              "avqa": {"annotations_dir": str(tmp_path), "media_dir": None,
                       "files": {"train": "train_qa.json", "val": None, "test": "val_qa.json"},
                       "val_fraction": 0.1}}  # fmt: skip
    qa, index, _, _, report = ingest_annotations(params, generate_embedded_dataset(params, 0))
    assert len(qa) == 115 and set(qa["split"]) == {"train", "val", "test"}
    assert (index[["in_train", "in_val", "in_test"]].sum(axis=1) == 1).all()
    assert all(len(c) == 4 for c in qa["choices"])
    write = real_scale.write_features(tmp_path / "f", plan["ids"][:2], 0, seconds=10)
    assert write == {"vggish": 2 * 10 * 128 * 4, "resnet18": 2 * 10 * 512 * 4}
