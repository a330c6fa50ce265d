"""README.md and docs/*.md show exactly what the committed result files say."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("render_docs", ROOT / "scripts/render_docs.py")
render_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_docs)
spec = importlib.util.spec_from_file_location("reference_run", ROOT / "scripts/reference_run.py")
reference_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference_run)


def test_generated_blocks_equal_their_result_files():
    stale = []
    for doc in render_docs.documents(ROOT):
        text = doc.read_text()
        if render_docs.render_text(text, ROOT, str(doc)) != text:
            stale.append(doc.name)
    assert not stale, f"run `python scripts/render_docs.py`: stale blocks in {stale}"


def test_a_block_is_rewritten_from_its_source_and_unknown_blocks_fail(tmp_path):
    render_docs.RENDERERS["_probe"] = lambda root: "fresh\n"
    try:
        doc = "a\n<!-- BEGIN GENERATED _probe -->\nold\n<!-- END GENERATED _probe -->\nb\n"
        assert "fresh" in render_docs.render_text(doc, tmp_path)
        assert "old" not in render_docs.render_text(doc, tmp_path)
    finally:
        del render_docs.RENDERERS["_probe"]
    with pytest.raises(KeyError, match="no renderer"):
        render_docs.render_text(doc, tmp_path)


def test_best_expert_per_type_weights_each_type_by_its_questions():
    import pandas as pd

    needs = pd.DataFrame({
        "level": ["all", "type", "type", "template"], "n": [4, 3, 1, 3],
        "audio_expert": [0.0, 80.0, 10.0, 99.0], "visual_expert": [0.0, 20.0, 60.0, 99.0],
        "text_expert": [0.0, 50.0, 0.0, 99.0], "r2scp_complete": [70.0, 0.0, 0.0, 0.0],
    })  # fmt: skip
    assert render_docs.best_expert_per_type(needs) == ((3 * 80.0 + 60.0) / 4, 70.0)


def test_the_visual_cue_table_refuses_experts_that_do_not_read_frames_but_moved(tmp_path):
    import json

    row = {"type": "All", "n": 10, "audio": 50.0, "visual": 60.0, "text": 40.0}
    result = {"command": "python benchmarks/visual_cue.py", "split": "test", "videos": 2,
              "questions": 10, "tokens_changed": 0.5, "with_cue": [row],
              "without_cue": [{**row, "visual": 55.0}]}  # fmt: skip
    (tmp_path / render_docs.RESULTS).mkdir(parents=True)
    path = tmp_path / render_docs.RESULTS / "visual_cue.json"
    path.write_text(json.dumps(result))
    assert "| All | 10 | 60.00 | 55.00 | -5.00 | 50.00 |" in render_docs.visual_cue(tmp_path)
    result["without_cue"][0]["audio"] = 51.0
    path.write_text(json.dumps(result))
    with pytest.raises(ValueError, match="audio / text experts moved on All"):
        render_docs.visual_cue(tmp_path)


def test_the_readout_speed_block_compares_two_commits_on_the_same_data(tmp_path):
    import json

    def result(commit, one, two, data="project /p"):
        run = {"threads": 1, "load_average": [0.5, 0.4],
               "stage_one": {"train_samples_per_s": one}, "stage_two": {"train_samples_per_s": two},
               "stage_two_per_sample_vs_stage_one": round(one / two, 2)}  # fmt: skip
        return {"command": "python benchmarks/training.py --project /p", "data": data,
                "train_questions": 100, "epochs": 2, "runs": [run], "commit": commit,
                "dirty_files": ["benchmarks/training.py"] if commit == "a" * 40 else [],
                "machine": {"cpus": 2, "torch": "2.13.0"}}  # fmt: skip

    folder = tmp_path / render_docs.RESULTS
    folder.mkdir(parents=True)
    assert "Not measured yet" in render_docs.readout_speed(tmp_path)
    assert "training_cap_votes_before.json" in render_docs.cap_votes_speed(tmp_path)
    assert "training_video_batch_after.json" in render_docs.video_batch_speed(tmp_path)
    (folder / "training_readout_before.json").write_text(json.dumps(result("a" * 40, 800.0, 200.0)))
    (folder / "training_readout_after.json").write_text(json.dumps(result("b" * 40, 1600.0, 500.0)))
    text = render_docs.readout_speed(tmp_path)
    assert "| before | `aaaaaaaaaa` | 1 | 800.00 | 200.00 | 4.00 |" in text
    assert "| after | `bbbbbbbbbb` | 1 | 1600.00 | 500.00 | 3.20 |" in text
    assert "stage I 2.00x, stage II 2.50x" in text
    assert "files changed in that checkout: benchmarks/training.py" in text
    other = result("b" * 40, 1600.0, 500.0, data="project /q")
    (folder / "training_readout_after.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other data or epochs"):
        render_docs.readout_speed(tmp_path)


def test_the_stage1_seeds_table_adds_the_run_of_the_earlier_code_when_kept(tmp_path):
    import json

    def result(**extra):
        seed = {f"{k}_{m}": 0.5 for k in ("val", "test") for m in ("audio", "visual", "text")}
        spread = {f"{k}_{m}": {"mean": 0.5, "sd": 0.0}
                  for k in ("val", "test") for m in ("audio", "visual", "text")}  # fmt: skip
        return {"command": "python benchmarks/stage1_seeds.py", "seeds": {"42": seed},
                "spread": spread, "run_seed": 42, "run_history_reproduced": True,
                "machine": {"load_average": [1.0]}, **extra}  # fmt: skip

    folder = tmp_path / render_docs.RESULTS
    folder.mkdir(parents=True)
    for name in ("stage1_seeds.json", "stage1_seeds_nocue.json"):
        (folder / name).write_text(json.dumps(result()))
    assert "before the single-query readout" not in render_docs.stage1_seeds(tmp_path)
    before = result(commit="f" * 40, dirty_files=[], run_history_reproduced=False)
    (folder / "stage1_seeds_before_readout.json").write_text(json.dumps(before))
    text = render_docs.stage1_seeds(tmp_path)
    assert "| with the cue, before the single-query readout | audio |" in text
    assert "(package at commit `ffffffffff`, files changed there: none)" in text
    assert "epoch for epoch: **no**" in text
    assert "without audio encoder pretraining" not in text
    without = result(audio_pretraining_videos=0, run_history_reproduced=False)
    (folder / "stage1_seeds_no_audio_pretraining.json").write_text(json.dumps(without))
    (folder / "default").mkdir()
    run = {"parameters": {"pretrain": {"audio_encoder": {"videos": 8}}}}
    (folder / "default/run.json").write_text(json.dumps(run))
    text = render_docs.stage1_seeds(tmp_path)
    assert "| with the cue, without audio encoder pretraining | text |" in text
    assert "not compared (the run pretrained its audio encoder, these seeds did not)" in text
    assert text.index("without audio encoder pretraining") < text.index("single-query readout")


def _stage1_result(types, key, value, commit="e"):
    """A benchmarks/stage1_seeds.py result of seeds 42 and 43 with per-type keys for ``types``:
    ``value`` at ``key``, 0.5 elsewhere."""
    keys = [f"{k}_{m}" for k in ("val", "test") for m in ("audio", "visual", "text")]
    keys += [f"test_{m}/{t}" for m in ("audio", "visual", "text") for t in types]
    seeds = {s: {k: value if k == key else 0.5 for k in keys} for s in ("42", "43")}
    spread = {k: {"mean": seeds["42"][k], "sd": 0.0} for k in keys}
    return {"command": "python benchmarks/stage1_seeds.py --data d", "seeds": seeds,
            "spread": spread, "commit": commit * 40, "dirty_files": [],
            "machine": {"load_average": [1.0]}}  # fmt: skip


def _write_results(tmp_path, files, results) -> Path:
    """Each of ``results`` as the docs/results file of its entry of ``files``; the folder."""
    import json

    folder = tmp_path / render_docs.RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    for (name, _), r in zip(files, results, strict=True):
        (folder / name).write_text(json.dumps(r))
    return folder


def test_the_attribute_block_compares_the_two_stage1_files_per_type_and_names_a_missing_key(tmp_path):
    import json

    def result(comparative):
        return _stage1_result(render_docs.ATTRIBUTE_TYPES, "test_audio/Audio Comparative", comparative)

    assert "Not measured yet" in render_docs.stage1_attributes(tmp_path)
    tagged = result(0.6)
    folder = _write_results(tmp_path, render_docs.ATTRIBUTE_FILES, (result(0.4), tagged))
    text = render_docs.stage1_attributes(tmp_path)
    assert "| test, Audio Comparative | test, Audio Counting | test, Audio-Visual Comparative |" in text
    assert "| presence only | audio | 50.0 / 50.0; 50.0 (0.0) | 50.0 / 50.0; 50.0 (0.0) | 40.0 / 40.0; 40.0 (0.0) | 50.0" in text
    assert "| presence, loudness, rhythm | audio | 50.0 / 50.0; 50.0 (0.0) | 50.0 / 50.0; 50.0 (0.0) | 60.0 / 60.0; 60.0 (0.0) | 50.0" in text
    assert "(package at commit `eeeeeeeeee`, files changed there: none; load average 1.0)" in text
    del tagged["spread"]["test_text/Audio-Visual Comparative"]
    (folder / "stage1_seeds_attributes.json").write_text(json.dumps(tagged))
    with pytest.raises(ValueError, match="stage1_seeds_attributes.json: no 'test_text/Audio-Visual"):
        render_docs.stage1_attributes(tmp_path)
    del tagged["seeds"]["43"]
    (folder / "stage1_seeds_attributes.json").write_text(json.dumps(tagged))
    with pytest.raises(ValueError, match="the same seeds in both"):
        render_docs.stage1_attributes(tmp_path)


def test_the_playing_block_compares_the_two_stage1_files_on_the_audio_visual_types(tmp_path):
    def result(location):
        return _stage1_result(render_docs.PLAYING_TYPES, "test_visual/Audio-Visual Location", location, "f")

    assert "--pretrain grounding_playing=false|true --out docs/results/stage1_seeds_[no_]playing.json" in (
        render_docs.stage1_playing(tmp_path))
    _write_results(tmp_path, render_docs.PLAYING_FILES, (result(0.4), result(0.7)))
    text = render_docs.stage1_playing(tmp_path)
    assert text.count("| visual grounding tags | expert |") == 1
    assert "| test, Audio-Visual Location | test, Audio-Visual Temporal |" in text
    assert "| presence only | visual | 50.0 / 50.0; 50.0 (0.0) | 50.0 / 50.0; 50.0 (0.0) | 40.0 / 40.0; 40.0 (0.0) |" in text
    assert "| presence, who plays | visual | 50.0 / 50.0; 50.0 (0.0) | 50.0 / 50.0; 50.0 (0.0) | 70.0 / 70.0; 70.0 (0.0) |" in text


def test_the_text_once_block_compares_scores_best_epochs_and_wall_time(tmp_path):
    def result(text_val, epoch, seconds):
        r = _stage1_result((), "val_text", text_val, "a")
        for m in ("audio", "visual", "text"):
            for s in r["seeds"].values():
                s[f"epoch_{m}"] = epoch if m == "text" else 20
            r["spread"][f"epoch_{m}"] = {"mean": epoch if m == "text" else 20, "sd": 0.0}
        return {**r, "seconds": seconds}

    assert "Not measured yet: `python benchmarks/stage1_seeds.py" in render_docs.stage1_text_once(tmp_path)
    _write_results(tmp_path, render_docs.TEXT_ONCE_FILES,
                   (result(0.4, 14, 1200.0), result(0.45, 6, 900.0)))  # fmt: skip
    text = render_docs.stage1_text_once(tmp_path)
    assert "| every row | text | 40.0 / 40.0; 40.0 (0.0) | 50.0 / 50.0; 50.0 (0.0) |" in text
    assert "| each distinct text once | text | 45.0 / 45.0; 45.0 (0.0) |" in text
    assert "| every row | 20 / 20; 20.0 (0.0) | 20 / 20; 20.0 (0.0) | 14 / 14; 14.0 (0.0) | 20.0 |" in text
    assert "| each distinct text once | 20 / 20; 20.0 (0.0) | 20 / 20; 20.0 (0.0) | 6 / 6; 6.0 (0.0) | 15.0 |" in text


def test_the_reproducibility_block_says_when_the_two_runs_are_of_different_code(tmp_path):
    import json

    history = {"history": {"train_loss": [1.0, 0.5]}, "best_epoch": 1, "epochs_run": 2}
    for run, commit in (("default", "a" * 40), ("seeds", "a" * 40)):
        folder = tmp_path / render_docs.RESULTS / run
        folder.mkdir(parents=True)
        params = {"pretrain": {"threads": 1}, "mix": {"threads": 1}}
        (folder / "run.json").write_text(json.dumps({"commit": commit, "seed": 42, "parameters": params,
                                                     "runner": "SequentialRunner"}))  # fmt: skip
        for name in ("pretrain_history.json", "mix_history.json"):
            (folder / name).write_text(json.dumps(history))
    text = render_docs.default_reproducibility(tmp_path)
    assert text.count("| yes |") == 2 and "different commits" not in text
    seeds = tmp_path / render_docs.RESULTS / "seeds/run.json"
    seeds.write_text(seeds.read_text().replace("a" * 40, "b" * 40))
    assert "different commits" in render_docs.default_reproducibility(tmp_path)
    default = tmp_path / render_docs.RESULTS / "default/run.json"
    run = json.loads(default.read_text())
    default.write_text(json.dumps({**run, "machine": {"cpu_model": "AMD EPYC"}}))
    assert "different processors (AMD EPYC; unknown)" in render_docs.default_reproducibility(tmp_path)


def test_the_processor_and_nocue_blocks_pair_runs_by_processor(tmp_path):
    """The nocue pair uses the kept default run of the nocue run's processor; the processor
    block refuses two runs of one processor."""
    import json
    import shutil

    shutil.copytree(ROOT / render_docs.RESULTS, tmp_path / render_docs.RESULTS)
    results = tmp_path / render_docs.RESULTS

    def set_cpu(run, cpu):
        path = results / run / "run.json"
        r = json.loads(path.read_text())
        r["machine"]["cpu_model"] = cpu
        path.write_text(json.dumps(r))

    set_cpu("default", "Z")
    set_cpu("default_previous", "Y")
    set_cpu("default_other_cpu_pair", "V")
    set_cpu("default_other_cpu", "X")
    set_cpu("nocue", "Y")
    assert "`docs/results/default_previous/` (commit" in render_docs.nocue_targets(tmp_path)
    assert "| what | X (`" in render_docs.default_other_cpu(tmp_path)
    set_cpu("nocue", "W")
    assert "`docs/results/default/` (commit" in render_docs.nocue_targets(tmp_path)
    assert "**another processor**" in render_docs.nocue_targets(tmp_path)
    set_cpu("default_other_cpu", "V")
    with pytest.raises(ValueError, match="same processor"):
        render_docs.default_other_cpu(tmp_path)
    shutil.rmtree(results / "default_other_cpu")
    assert "Not kept" in render_docs.default_other_cpu(tmp_path)



def _stage2_variant(block: str, over: dict, a: dict, b: dict) -> dict:
    """One variant of a benchmarks/stage2_seeds.py file: seeds 42 and 43, their mean and sd."""
    return {"overrides": {"mix": {}, "model": {}, block: over}, "seeds": {"42": a, "43": b},
            "spread": {k: {"mean": (a[k] + b[k]) / 2, "sd": abs(a[k] - b[k]) / 2 ** 0.5}
                       for k in a}}  # fmt: skip


def _stage2_file(variants: dict, reproduced: bool | None) -> dict:
    return {"command": "python benchmarks/stage2_seeds.py --data d", "commit": "c" * 40,
            "dirty_files": [], "machine": {"cpus": 2, "cpu_model": "X", "load_average": [1.0]},
            "train_questions": 1000, "test_questions": 200, "run_seed": 42,
            "run_history_reproduced": reproduced, "variants": variants}  # fmt: skip


def test_the_stage2_batching_block_shows_every_variant_per_seed(tmp_path):
    import json

    def seed(val, epochs):
        return {"val_score": val, "test_none": 0.6, "test_audio": 0.5, "test_visual": 0.4,
                "train_none": 0.8, "epochs": epochs, "samples_per_s": 600.0}  # fmt: skip

    folder = tmp_path / render_docs.RESULTS
    folder.mkdir(parents=True)
    assert "Not measured yet" in render_docs.stage2_batching(tmp_path)
    r = _stage2_file({"configured": _stage2_variant("mix", {}, seed(0.5, 3), seed(0.6, 5)),
                      "uniform": _stage2_variant("mix", {"batch_by_video": False},
                                                 seed(0.5, 4), seed(0.5, 4))}, True)  # fmt: skip
    (folder / "stage2_batching.json").write_text(json.dumps(r))
    text = render_docs.stage2_batching(tmp_path)
    assert "epoch for epoch: yes" in text and "`cccccccccc`" in text
    assert "| configured | none | 50.0 / 60.0; 55.0 (7.1) |" in text
    assert "| uniform | `mix.batch_by_video: false` | 50.0 / 50.0; 50.0 (0.0) |" in text
    assert "| 3 / 5; 4.0 (1.4) |" in text


def test_the_stage2_patience_block_counts_the_seeds_that_selected_the_same_model(tmp_path):
    """A seed counts as the same model only when every selected-model figure is equal; the
    epochs saved are summed over the seeds; a missing file is 'not measured' with its command."""
    import json

    def seed(val, epochs):
        return {"val_score": val, "test_none": 0.6, "test_audio": 0.5, "test_visual": 0.4,
                "train_none": 0.8, "epochs": epochs, "samples_per_s": 600.0}  # fmt: skip

    folder = tmp_path / render_docs.RESULTS
    folder.mkdir(parents=True)
    text = render_docs.stage2_patience(tmp_path)
    assert text.count("Not measured yet") == 2 and "--variant patience2 mix.patience=2" in text
    r = _stage2_file({"configured": _stage2_variant("mix", {}, seed(0.5, 6), seed(0.6, 5)),
                      "patience2": _stage2_variant("mix", {"patience": 2},
                                                   seed(0.5, 5), seed(0.61, 3))}, True)  # fmt: skip
    (folder / render_docs.PATIENCE_FILES[0][0]).write_text(json.dumps(r))
    text = render_docs.stage2_patience(tmp_path)
    assert "| patience2 | `mix.patience: 2` | 50.0 / 61.0; 55.5 (7.8) |" in text
    assert "on 1 of 2 seeds, in 3 epochs fewer over the seeds" in text
    assert text.count("Not measured yet") == 1  # the more-videos file


def test_the_patience_run_block_compares_the_stage_two_nodes_and_the_tables(tmp_path):
    """The whole patience-2 run next to the default rerun: not measured without its files; with
    them, the stage-II nodes' minutes and whether every report table is the same; a run of
    another run config or only some pipelines is refused."""
    import json
    import shutil

    folder = tmp_path / render_docs.RESULTS
    (tmp_path / render_docs.PATIENCE_CONFIG).parent.mkdir(parents=True)
    shutil.copy(ROOT / render_docs.PATIENCE_CONFIG, tmp_path / render_docs.PATIENCE_CONFIG)
    assert "Not measured yet" in render_docs.default_patience(tmp_path)
    shutil.copytree(ROOT / render_docs.RESULTS / render_docs.RERUN, folder / render_docs.RERUN)
    shutil.copytree(folder / render_docs.RERUN, folder / render_docs.PATIENCE_RUN)
    run_json = folder / render_docs.PATIENCE_RUN / "run.json"
    run = json.loads(run_json.read_text())
    run["run_config_params"] = {"mix": {"patience": 2}}
    run_json.write_text(json.dumps(run))
    text = render_docs.default_patience(tmp_path)
    assert "all 7 report tables are byte for byte `default_rerun`'s" in text
    assert "| mix_experts |" in text and "| the whole run (wall) |" in text
    import pandas as pd

    table = pd.read_csv(folder / render_docs.PATIENCE_RUN / "results_table.csv")
    table.loc[0, "Exist"] = -1.0  # the first method selected another model
    table.to_csv(folder / render_docs.PATIENCE_RUN / "results_table.csv", index=False)
    text = render_docs.default_patience(tmp_path)
    assert "differ from `default_rerun`'s: results_table.csv" in text
    assert f"the methods whose accuracy rows differ: {table.loc[0, 'method']};" in text
    assert "claim verdicts that differ: 0 of" in text
    run["pipelines"] = "mix"
    run_json.write_text(json.dumps(run))
    with pytest.raises(ValueError, match="is not a whole default run"):
        render_docs.default_patience(tmp_path)
    run["run_config_params"] = {}
    run_json.write_text(json.dumps(run))
    with pytest.raises(ValueError, match="not those of docs/run_configs/patience2.yml"):
        render_docs.default_patience(tmp_path)


def test_the_stage2_binding_block_adds_the_audio_visual_types_and_names_a_missing_one(tmp_path):
    import json

    def seed(val, loc):
        return {"val_score": val, "test_none": 0.6, "test_audio": 0.5, "test_visual": 0.4,
                "train_none": 0.8, "epochs": 3, "samples_per_s": 600.0,
                "test_none/Audio-Visual Location": loc, "test_none/Audio-Visual Temporal": 0.3}  # fmt: skip

    folder = tmp_path / render_docs.RESULTS
    folder.mkdir(parents=True)
    assert "--variant binding model.binding_hops=1" in render_docs.stage2_binding(tmp_path)
    r = _stage2_file({"configured": _stage2_variant("model", {}, seed(0.5, 0.4), seed(0.6, 0.5)),
                      "binding": _stage2_variant("model", {"binding_hops": 1},
                                                 seed(0.5, 0.45), seed(0.5, 0.45))}, None)  # fmt: skip
    (folder / "stage2_binding.json").write_text(json.dumps(r))
    text = render_docs.stage2_binding(tmp_path)
    assert "epoch for epoch: not compared" in text
    assert "| test, complete, Audio-Visual Location | test, complete, Audio-Visual Temporal |" in text
    assert "| configured | none | 50.0 / 60.0; 55.0 (7.1) | 40.0 / 50.0; 45.0 (7.1) |" in text
    assert "| binding | `model.binding_hops: 1` | 50.0 / 50.0; 50.0 (0.0) | 45.0 / 45.0;" in text
    del r["variants"]["binding"]["seeds"]["42"]["test_none/Audio-Visual Temporal"]
    del r["variants"]["binding"]["spread"]["test_none/Audio-Visual Temporal"]
    (folder / "stage2_binding.json").write_text(json.dumps(r))
    with pytest.raises(ValueError, match="binding has no 'test_none/Audio-Visual Temporal'"):
        render_docs.stage2_binding(tmp_path)


def test_grid_trainings_counts_what_the_variants_pipeline_trains():
    """Per seed: a stage II for every selected variant (not R2ScP at params:seed, the mix
    pipeline's model; not no_mixing) and a stage I for the shared experts of every seed but
    params:seed and for every variant that retrains stage I (not no_stage1, which trains none)."""
    ablations = {"no_votes": {"model": {"expert_votes": False}},
                 "no_grounding": {"pretrain": {"grounding_weight": 0.0}},
                 "no_stage1": {"pretrain": {"stage_one": False}},
                 "no_mixing": {"model": {"mixing": False}}}  # fmt: skip
    evaluate = {"split": "test", "settings": ["complete"], "missing_rates": [1.0],
                "ablations": ablations, "methods": ["r2scp", "zero_fill", *ablations]}  # fmt: skip
    params = {"seed": 2, "model": {}, "pretrain": {}}
    count = render_docs.grid_trainings({**params, "evaluate": {**evaluate, "seeds": [1, 2, 3]}})
    assert count == {"stage I": 2 + 3, "stage II": 6 * 3 - 1 - 3}
    count = render_docs.grid_trainings({**params, "evaluate": {**evaluate, "seeds": [5, 6]}})
    assert count == {"stage I": 2 + 2, "stage II": 6 * 2 - 2}
    count = render_docs.grid_trainings({**params, "evaluate": {**evaluate, "seeds": None}})
    assert count == {"stage I": 1, "stage II": 6 - 1 - 1}


def test_the_full_time_block_projects_the_rest_from_the_measured_stages(tmp_path):
    import json
    import shutil

    results = tmp_path / render_docs.RESULTS
    assert render_docs.full_time(tmp_path).startswith("Not measured yet")
    shutil.copytree(ROOT / render_docs.RESULTS / "default", results / "default")
    run = json.loads((results / "default/run.json").read_text())
    params = reference_run.parameters("full")
    shutil.copytree(results / "default", results / "full")  # histories: the default run's
    (results / "full/run.json").write_text(json.dumps(
        {**run, "env": "full", "parameters": params, "wall_seconds": 1800.0}))  # fmt: skip
    nodes = {"pretrain_experts": 600.0, "mix_experts": 120.0, "generate_embedded_dataset": 60.0}
    (results / "full/node_times.json").write_text(json.dumps({"nodes": nodes}))
    grid = render_docs.grid_trainings(params)
    rest = grid["stage I"] * 600 + grid["stage II"] * 120
    text = render_docs.full_time(tmp_path)
    assert f"| stage I: every other seed's shared experts, and each seed of a variant that " \
           f"retrains them | {grid['stage I']} | 10.0 | {grid['stage I'] / 6:.1f} |" in text
    assert f"R2ScP's at this seed is the one above) | {grid['stage II']} | 2.0 |" in text
    assert f"would take about **{(rest + 1800) / 3600:.1f} h**" in text
    assert "| pretrain_experts | 10.0 |" in text and "generative imputers" not in text
    # kept: the default methods trained on the full data give the imputers' and evaluation's
    # time per seed / model, and check the rule on their variants
    methods = results / render_docs.FULL_METHODS_RUN
    methods.mkdir()
    runtime = reference_run.run_config_params(ROOT / "docs/run_configs/full_default_methods.yml")
    both = reference_run.parameters("full", runtime_params=runtime)
    (methods / "run.json").write_text(json.dumps({**run, "parameters": both}))
    chosen = both["evaluate"]["methods"]
    trained = {f"{m}.train_variant": 60.0 for m in chosen} | {
        "train_generative_imputers": 300.0, "evaluate_methods": 24.0 * len(chosen)}  # fmt: skip
    (methods / "node_times.json").write_text(json.dumps({"nodes": trained}))
    seeds = len(params["evaluate"]["seeds"])
    from r2scp_pipeline.experiment import check_parameters

    models = seeds * len(check_parameters(params["evaluate"], 42).methods)
    rest += seeds * 300 + models * 24
    text = render_docs.full_time(tmp_path)
    assert f"| generative imputers, one per seed | {seeds} | 5.0 |" in text
    assert f"| evaluation of each model at every setting and missing rate | {models} | 0.4 |" in text
    assert f"would take about **{(rest + 1800) / 3600:.1f} h**" in text
    n2 = render_docs.grid_trainings(both)["stage II"]
    assert (f"took from 0.5 to 0.5 times R2ScP's, {(len(chosen) - 1) * 60 / 60:.1f} min in all "
            f"where the table's rule gives {n2 * 120 / 60:.1f} min") in text  # fmt: skip


def test_the_full_data_block_pairs_the_model_targets_with_the_default_run(tmp_path):
    import shutil

    results = tmp_path / render_docs.RESULTS
    assert render_docs.full_default_methods(tmp_path).startswith("Not measured yet")
    shutil.copytree(ROOT / render_docs.RESULTS / "default", results / "default")
    shutil.copytree(results / "default", results / render_docs.FULL_METHODS_RUN)
    text = render_docs.full_default_methods(tmp_path)
    assert "Default data: `docs/results/default/`" in text
    assert "| train minus test, complete (points) | <= 15 |" in text and "wall time" not in text
    assert text.count(" | +0.0 |") == 9  # the same files on both sides: no change in any row


def test_the_more_videos_block_reads_the_committed_runs_and_refuses_another_run(tmp_path):
    """On the committed files the block names both runs and every target, the time targets
    included; a run whose recorded run config is not the committed one, or that is not a whole
    default run, is refused (its figures would be mislabelled)."""
    import json
    import shutil

    text = render_docs.default_more_videos(ROOT)
    assert "`docs/results/default_rerun/`" in text and "`docs/results/more_videos/`" in text
    assert "| complete, Audio-Visual Location | >= 70 |" in text
    assert "| default `kedro run` wall time (min) | <= 20 |" in text
    folder = tmp_path / render_docs.RESULTS
    assert "Not measured yet" in render_docs.default_more_videos(tmp_path)
    assert "Not measured yet" in render_docs.default_more_videos_claims(tmp_path)
    for name in ("default_rerun", "more_videos"):
        shutil.copytree(ROOT / render_docs.RESULTS / name, folder / name)
    (tmp_path / render_docs.MORE_VIDEOS_CONFIG).parent.mkdir(parents=True)
    shutil.copy(ROOT / render_docs.MORE_VIDEOS_CONFIG, tmp_path / render_docs.MORE_VIDEOS_CONFIG)
    assert render_docs.default_more_videos(tmp_path) == text
    run = json.loads((folder / "more_videos/run.json").read_text())
    run["run_config_params"]["pretrain"]["epochs"] = 30
    (folder / "more_videos/run.json").write_text(json.dumps(run))
    for block in (render_docs.default_more_videos, render_docs.default_more_videos_claims):
        with pytest.raises(ValueError, match="not those of docs/run_configs/more_videos.yml"):
            block(tmp_path)
    run["run_config_params"]["pretrain"]["epochs"] = 22
    run["pipelines"] = "variants,evaluate"
    (folder / "more_videos/run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="is not a whole default run"):
        render_docs.default_more_videos(tmp_path)


def test_the_same_data_block_pairs_the_default_run_with_the_more_videos_run(tmp_path):
    """Both runs of one dataset: the targets side by side and the parameters that differ;
    another dataset (its files differ) is refused in words, not compared."""
    import json
    import shutil

    text = render_docs.default_same_data(ROOT)
    assert "the same dataset, features and memory bank" in text
    assert "`mix.patience`: 3 -> 2" in text
    assert "| complete, Audio-Visual Location | >= 70 |" in text and "wall time" not in text
    folder = tmp_path / render_docs.RESULTS
    for name in ("default", "more_videos"):
        shutil.copytree(ROOT / render_docs.RESULTS / name, folder / name)
    assert render_docs.default_same_data(tmp_path) == text
    run = json.loads((folder / "more_videos/run.json").read_text())
    run["parameters"]["dataset"]["embedded"]["num_videos"] = 1000
    (folder / "more_videos/run.json").write_text(json.dumps(run))
    assert "is not of the default run's data" in render_docs.default_same_data(tmp_path)


def test_the_stage1_processes_block_reads_the_benchmark_and_says_what_is_the_same(tmp_path):
    import json

    assert "Not measured yet" in render_docs.stage1_processes(tmp_path)
    one = {"expert_processes": 1, "wall_s": 120.0, "cpu_s": 118.0, "peak_tree_rss_gb": 2.0,
           "peak_tree_pss_gb": 1.9, "audio_encoder_s": 30.0, "epochs_run": 3,
           "timing": {"train_seconds": 60.0}}  # fmt: skip
    two = {**one, "expert_processes": 2, "wall_s": 70.0, "same_weights": True,
           "same_best": True, "same_history": False,
           "timing": {"groups": {"audio": {"train_seconds": 20.0},
                                 "visual+text": {"train_seconds": 40.0}}}}  # fmt: skip
    result = {"command": "python benchmarks/stage1_processes.py --data d", "commit": "abc",
              "dirty_files": [], "machine": {"cpus": 2, "cpu": "CPU", "load_average": [1.0]},
              "videos": 10, "train_questions": 50, "seed": 7, "runs": [one, two]}  # fmt: skip
    (tmp_path / render_docs.RESULTS).mkdir(parents=True)
    (tmp_path / render_docs.RESULTS / "stage1_processes.json").write_text(json.dumps(result))
    text = render_docs.stage1_processes(tmp_path)
    assert "| 1 | audio+visual+text | 2.0 | 2.0 | 0.5 | 1.0 | 2.00 | 1.90 | 3 | - |" in text
    assert "| 2 | audio / visual+text | 1.2 | 2.0 | 0.5 | 0.3 / 0.7 | 2.00 | 1.90 | 3 | yes / yes / **no** |" in text
