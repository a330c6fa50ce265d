"""``benchmarks/visual_cue.py`` re-renders a run's test videos without the generator's visual cue
and scores the stage-I experts on both versions of the frames."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.media import extract_visual_features
from r2scp_pipeline.pipelines.dataset.generator import generate_dataset, load_scenes
from r2scp_pipeline.training import model_checkpoint, train_stage_one
from tests.synthetic import make_synthetic_tables

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("visual_cue", ROOT / "benchmarks/visual_cue.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "k_purge": 3, "n_retrieve": 2}
LOOP = {"epochs": 1, "batch_size": 32, "lr": 3e-3, "patience": 5, "checkpoint_dir": None}


def _features_conf(tmp: Path) -> Path:
    """A conf folder whose features parameters encode small frames quickly."""
    params = yaml.safe_load((ROOT / "conf/base/parameters_features.yml").read_text())
    params["features"]["visual"]["efficientnet_lite0"]["input_size"] = 96  # a 3x3 map
    params["features"]["progress"] = False
    conf = tmp / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base/parameters_features.yml").write_text(yaml.safe_dump(params))
    return conf


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A data folder like a default run's: embedded scenes and frames, their visual features,
    synthetic questions / audio / text about the same video ids, a stage-I checkpoint."""
    tmp = tmp_path_factory.mktemp("cue")
    data, conf = tmp / "data", _features_conf(tmp)
    root = data / "01_raw/embedded"
    generate_dataset({"root": str(root), "num_videos": 8, "frame_size": 96}, 3)
    ids = [s["video_id"] for s in load_scenes(root)]
    tables = make_synthetic_tables(n_videos=len(ids), seed=5, visual_tokens=3)
    rename = {f"syn{i:05d}": v for i, v in enumerate(ids)}
    for name in ("qa_pairs", "audio_features", "question_features"):
        if "video_id" in tables[name]:
            tables[name]["video_id"] = tables[name]["video_id"].map(rename)
    params = yaml.safe_load((conf / "base/parameters_features.yml").read_text())["features"]
    index = tables["qa_pairs"][["video_id"]].drop_duplicates().reset_index(drop=True)
    index["frames_dir"] = [str(root / "frames" / v) for v in index["video_id"]]
    tables["visual_features"], _ = extract_visual_features(index, {**params, "source": "extracted"})
    for folder, name in (("02_intermediate", "qa_pairs"), ("04_feature", "audio_features"),
                         ("04_feature", "visual_features"), ("04_feature", "question_features")):  # fmt: skip
        (data / folder).mkdir(parents=True, exist_ok=True)
        tables[name].to_parquet(data / folder / f"{name}.parquet")
    tens = build_tensors(tables["qa_pairs"], tables["audio_features"], tables["visual_features"],
                         tables["question_features"])  # fmt: skip
    model, _ = train_stage_one(tens, MODEL, LOOP, {}, seed=0)
    (data / "06_models").mkdir()
    torch.save(model_checkpoint(model, {}), data / "06_models/stage1_experts.pt")
    return data, conf


def test_only_the_visual_expert_sees_the_frames_without_the_cue(run, tmp_path):
    data, conf = run
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(data), "--conf", str(conf), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["split"] == "test" and r["questions"] > 0
    assert 0 < r["tokens_changed"] < 1  # the cue shows in some cells and seconds, not in all
    with_cue = {row["type"]: row for row in r["with_cue"]}
    without = {row["type"]: row for row in r["without_cue"]}
    assert set(with_cue) == set(without) and "All" in with_cue
    assert sum(with_cue[t]["n"] for t in with_cue if " " not in t and t != "All") == r["questions"]
    for t, row in without.items():  # the audio and text experts read no frame
        assert (row["audio"], row["text"]) == (with_cue[t]["audio"], with_cue[t]["text"])


def test_frames_that_no_longer_render_as_stored_stop_the_benchmark(run, tmp_path):
    data, conf = run
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    scenes = load_scenes(copy / "01_raw/embedded")
    qa = pd.read_parquet(copy / "02_intermediate/qa_pairs.parquet")
    first = sorted(qa.loc[qa["split"] == "test", "video_id"])[0]
    assert any(s["video_id"] == first for s in scenes)
    frame = copy / "01_raw/embedded/frames" / first / "000001.jpg"
    Image.new("RGB", Image.open(frame).size, (0, 0, 0)).save(frame)
    with pytest.raises(SystemExit, match="does not give the stored frame"):
        bench.main(["--data", str(copy), "--conf", str(conf)])


def test_a_dataset_drawn_without_the_cue_is_refused(tmp_path):
    root = tmp_path / "data/01_raw/embedded"
    generate_dataset({"root": str(root), "num_videos": 4, "visual_cue": False}, 3)
    with pytest.raises(SystemExit, match="drawn without the visual cue"):
        bench.main(["--data", str(tmp_path / "data")])
