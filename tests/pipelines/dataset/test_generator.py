"""Tests of the MiniMusic-AVQA generator (``pipelines/dataset/generator``).

Most tests share one 60-video dataset generated once per module. The answer checks do not
trust the generator's bookkeeping: ``_gen_oracle`` re-measures every audio fact on the
per-instrument stems and answers the questions itself.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from r2scp_pipeline import avqa
from r2scp_pipeline.pipelines.dataset import generator as gen
from r2scp_pipeline.pipelines.dataset.generator import (
    generate_dataset,
    instrument_boxes,
    load_scenes,
    render_frames,
    render_stems,
    render_voiceover,
)

from ._gen_oracle import Oracle, check_records, measure_stem

SEED = 7
N_VIDEOS = 60
SPLIT_FILES = {s: f"avqa-{s}.json" for s in ("train", "val", "test")}
OFFICIAL_FIELDS = ["video_id", "question_id", "type", "question_content", "templ_values",
                   "question_deleted", "anser"]  # fmt: skip
PLACEHOLDER_VALUES = {
    "<Object>": set(avqa.INSTRUMENTS), "<LR>": {"left", "middle", "right"},
    "<FL>": {"first", "last"}, "<LL>": {"loudest", "lowest"},
    "<TH>": {"first", "second", "third"}, "<BA>": {"before", "after"},
    "<LRer>": {"leftest", "rightest"},
}  # fmt: skip
TEMPLATE_TYPES = {t: (m, s) for m, s, t in avqa.TEMPLATES}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("minimusic") / "embedded"
    manifest = generate_dataset({"root": str(root), "num_videos": N_VIDEOS}, SEED)
    return root, manifest


def read_records(root: Path) -> dict[str, list[dict]]:
    return {s: json.loads((root / f).read_text(encoding="utf-8")) for s, f in SPLIT_FILES.items()}


def all_records(root: Path) -> list[dict]:
    return [r for recs in read_records(root).values() for r in recs]


# ---- official format -------------------------------------------------------------------------


def test_manifest_lists_the_three_split_files(dataset):
    root, manifest = dataset
    assert list(manifest.columns) == ["split", "annotations_path", "n_records"]
    assert manifest["split"].tolist() == ["train", "val", "test"]
    records = read_records(root)
    for row in manifest.itertuples():
        assert Path(row.annotations_path) == root / SPLIT_FILES[row.split]
        assert row.n_records == len(records[row.split]) > 0


def test_records_have_exactly_the_official_fields_and_types(dataset):
    root, _ = dataset
    for r in all_records(root):
        assert list(r) == OFFICIAL_FIELDS
        assert isinstance(r["video_id"], str) and re.fullmatch(r"\d{8}", r["video_id"])
        assert isinstance(r["question_id"], int) and not isinstance(r["question_id"], bool)
        assert isinstance(r["type"], str)
        kind = json.loads(r["type"])
        assert isinstance(kind, list) and len(kind) == 2
        assert tuple(kind) == TEMPLATE_TYPES[r["question_content"]]
        assert isinstance(r["templ_values"], str)
        values = json.loads(r["templ_values"])
        assert isinstance(values, list) and all(isinstance(v, str) for v in values)
        holes = re.findall(r"<[A-Za-z]+>", r["question_content"])
        assert len(holes) == len(values), (r["question_content"], values)
        for hole, value in zip(holes, values, strict=True):
            assert value in PLACEHOLDER_VALUES[hole], (hole, value)
        assert r["question_deleted"] == 0
        assert r["anser"] in avqa.ANSWER_TO_IDX


def test_question_ids_unique_and_split_by_video(dataset):
    root, _ = dataset
    records = read_records(root)
    ids = [r["question_id"] for recs in records.values() for r in recs]
    assert len(ids) == len(set(ids))
    split_of: dict[str, str] = {}
    for split, recs in records.items():
        for r in recs:
            assert split_of.setdefault(r["video_id"], split) == split, "a video in two splits"
    scenes = load_scenes(root)
    assert [s["video_id"] for s in scenes] == [f"{i:08d}" for i in range(1, N_VIDEOS + 1)]
    assert Counter(s["split"] for s in scenes) == {"train": 42, "val": 6, "test": 12}
    assert all(split_of[s["video_id"]] == s["split"] for s in scenes)
    per_video = Counter(r["video_id"] for r in all_records(root))
    assert set(per_video) == {s["video_id"] for s in scenes}
    assert all(5 <= n <= 8 for n in per_video.values()), per_video


def test_template_coverage_and_yes_no_balance(dataset):
    root, _ = dataset
    records = all_records(root)
    assert len({r["question_content"] for r in records}) >= 25
    answers = Counter(r["anser"] for r in records)
    share = answers["yes"] / (answers["yes"] + answers["no"])
    assert 0.4 <= share <= 0.6, answers
    # counting answers are words and never the majority of their template by a landslide
    counts = [r["anser"] for r in records if r["question_content"].startswith("How many")]
    assert counts and all(a in {"zero", "one", "two", "three", "four", "five"} for a in counts)


def test_scene_content_is_varied(dataset):
    root, _ = dataset
    scenes = load_scenes(root)
    insts = [i for s in scenes for i in s["instruments"]]
    assert len({i["class"] for i in insts if i["visible"]}) >= 15
    assert any(i["visible"] and not i["sounding"] for i in insts), "no silent visible instrument"
    assert any(i["sounding"] and not i["visible"] for i in insts), "no off-screen instrument"
    assert {s["background"]["kind"] for s in scenes} == {"indoor", "outdoor"}
    assert any(s["voiceover"] for s in scenes) and not all(s["voiceover"] for s in scenes)
    assert {len([i for i in s["instruments"] if i["visible"]]) for s in scenes} == {1, 2, 3}
    assert {i["rhythm"] for i in insts if i["sounding"]} == {"rhythmic", "melodic", "sustained"}
    for s in scenes:  # the contract read by the ingestion (scene_metadata)
        assert sorted(s["visible"]) == sorted(i["class"] for i in s["instruments"] if i["visible"])
        assert s["sounding"] == sorted({i["class"] for i in s["instruments"] if i["sounding"]})


# ---- answers recomputed from the stems -------------------------------------------------------


def test_answers_agree_with_measurements_on_the_stems(dataset):
    root, _ = dataset
    by_video: dict[str, list[dict]] = {}
    for r in all_records(root):
        by_video.setdefault(r["video_id"], []).append(r)
    disagreements, checked = [], Counter()
    for scene in load_scenes(root):
        oracle = Oracle(scene, render_stems(scene), render_voiceover(scene))
        recs = by_video[scene["video_id"]]
        disagreements += [(scene["video_id"], *d) for d in check_records(scene, oracle, recs)]
        for r in recs:
            if oracle.answer(r["question_content"], json.loads(r["templ_values"])) is not None:
                checked[r["question_content"]] += 1
    assert disagreements == []
    must = [
        "Is the <Object> louder than the <Object>?",
        "Is the instrument on the <LR> louder than the instrument on the <LR>?",
        "How many musical instruments were heard throughout the video?",
        "How many instruments are sounding in the video?",
        "What is the <TH> instrument that comes in?",
        "Is there a <Object> sound?",
        "Is the <Object> in the video always playing?",
    ]
    assert all(checked[t] > 0 for t in must), checked
    assert sum(checked.values()) >= 200


def test_oracle_catches_a_wrong_answer(dataset):
    """The agreement above can fail: flip answers and the oracle objects to each."""
    root, _ = dataset
    flipped = 0
    for scene in load_scenes(root)[:20]:
        oracle = Oracle(scene, render_stems(scene), render_voiceover(scene))
        for r in all_records(root):
            if r["video_id"] != scene["video_id"] or r["anser"] not in ("yes", "no"):
                continue
            if oracle.answer(r["question_content"], json.loads(r["templ_values"])) is None:
                continue
            wrong = dict(r, anser="no" if r["anser"] == "yes" else "yes")
            assert len(check_records(scene, oracle, [wrong])) == 1
            flipped += 1
    assert flipped >= 10


def test_stems_match_the_scene_and_the_written_mix(dataset):
    root, _ = dataset
    for scene in load_scenes(root)[:25]:
        stems = render_stems(scene)
        assert set(stems) == {i["id"] for i in scene["instruments"]}
        for inst in scene["instruments"]:
            facts = measure_stem(stems[inst["id"]], scene["sample_rate"])
            assert facts.sounding == inst["sounding"]
            if inst["sounding"]:  # the stem realises the bookkeeping it was drawn from
                assert facts.loudness_db == pytest.approx(inst["loudness_db"], abs=0.5)
                assert facts.onset == pytest.approx(inst["onset"], abs=0.02)
                assert facts.offset == pytest.approx(inst["offset"], abs=0.7)
        mix, sr = sf.read(root / "audio" / f"{scene['video_id']}.wav")
        dry = np.sum(list(stems.values()), axis=0)
        assert np.corrcoef(dry, mix)[0, 1] > 0.5, "the wav is not made of these stems"


def test_more_rhythmic_is_a_measurable_property(dataset):
    root, _ = dataset
    by_style: dict[str, list[float]] = {"rhythmic": [], "melodic": [], "sustained": []}
    for scene in load_scenes(root):
        stems = render_stems(scene)
        for inst in scene["instruments"]:
            if inst["sounding"] and inst["offset"] - inst["onset"] >= 3:
                by_style[inst["rhythm"]].append(measure_stem(stems[inst["id"]], 16000).rhythm)
    med = {k: float(np.median(v)) for k, v in by_style.items()}
    assert med["rhythmic"] > 1.5 * med["melodic"] and med["rhythmic"] > 1.5 * med["sustained"], med


# ---- media -----------------------------------------------------------------------------------


def test_media_files_have_the_right_format(dataset):
    root, _ = dataset
    for scene in load_scenes(root):
        vid = scene["video_id"]
        info = sf.info(str(root / "audio" / f"{vid}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == 10 * 16000
        audio, _ = sf.read(root / "audio" / f"{vid}.wav")
        assert np.sqrt(np.mean(audio**2)) > 0.005, f"{vid}: (nearly) silent mix"
        assert np.max(np.abs(audio)) <= 0.96
        frames = sorted(p.name for p in (root / "frames" / vid).iterdir())
        assert frames == [f"{k:06d}.jpg" for k in range(1, 11)]
        with Image.open(root / "frames" / vid / frames[0]) as im:
            assert (im.size, im.mode, im.format) == ((224, 224), "RGB", "JPEG")


def _jpeg(im: Image.Image) -> np.ndarray:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    buf.seek(0)
    return np.asarray(Image.open(buf), dtype=float)


def test_sounding_instruments_show_a_visible_cue(dataset):
    """Pixel difference, inside each instrument's box, between the written frame and the same
    frame drawn without any cue: large exactly in the seconds its *stem* is active."""
    root, _ = dataset
    on, off = [], []
    for scene in load_scenes(root)[:20]:
        plain = render_frames(scene, 224, cue=False)
        boxes = instrument_boxes(scene, 224)
        stems = render_stems(scene)
        for k in range(scene["seconds"]):
            frame = np.asarray(
                Image.open(root / "frames" / scene["video_id"] / f"{k + 1:06d}.jpg"), float
            )
            ref = _jpeg(plain[k])
            for inst in scene["instruments"]:
                if not inst["visible"]:
                    continue
                x0, y0, x1, y1 = boxes[inst["id"]]
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(224, x1), min(224, y1)
                diff = np.abs(frame[y0:y1, x0:x1] - ref[y0:y1, x0:x1]).mean()
                second = stems[inst["id"]][k * 16000 : (k + 1) * 16000]
                (on if np.sqrt(np.mean(second**2)) > 1e-4 else off).append(diff)
    assert len(on) > 20 and len(off) > 20
    assert min(on) > 10 and max(off) < 8, (min(on), max(off))


def test_visual_cue_false_draws_the_frames_without_the_cue(tmp_path):
    """Same scenes, sound and questions; the frames are those drawn without the cue."""
    with_cue, without = tmp_path / "with", tmp_path / "without"
    _small(with_cue), _small(without, visual_cue=False)
    wavs = sorted(p.relative_to(with_cue) for p in (with_cue / "audio").iterdir())
    for name in [*SPLIT_FILES.values(), *wavs]:
        assert (with_cue / name).read_bytes() == (without / name).read_bytes(), name
    differ = 0
    for scene in load_scenes(without):
        plain = render_frames(scene, 224, cue=False)
        for k in range(scene["seconds"]):
            path = f"frames/{scene['video_id']}/{k + 1:06d}.jpg"
            assert np.array_equal(np.asarray(Image.open(without / path)), _jpeg(plain[k]))
            differ += (without / path).read_bytes() != (with_cue / path).read_bytes()
    assert differ > 0  # some instrument sounds on screen somewhere
    assert json.loads((without / "manifest.json").read_text())["config_hash"] != json.loads(
        (with_cue / "manifest.json").read_text())["config_hash"]  # fmt: skip


# ---- determinism, re-runs, atomicity, errors -------------------------------------------------


def _small(root: Path, seed: int = 3, **extra) -> pd.DataFrame:
    return generate_dataset({"root": str(root), "num_videos": 6, **extra}, seed)


def test_same_seed_same_bytes_and_samples(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _small(a), _small(b), _small(c, seed=4)
    for name in [*SPLIT_FILES.values(), "scenes.json", "manifest.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for wav in sorted((a / "audio").iterdir()):
        x, _ = sf.read(wav, dtype="int16")
        y, _ = sf.read(b / "audio" / wav.name, dtype="int16")
        assert np.array_equal(x, y)
    for jpg in sorted((a / "frames").rglob("*.jpg")):
        assert jpg.read_bytes() == (b / jpg.relative_to(a)).read_bytes()
    assert (a / "avqa-train.json").read_bytes() != (c / "avqa-train.json").read_bytes()
    x, _ = sf.read(a / "audio" / "00000001.wav", dtype="int16")
    y, _ = sf.read(c / "audio" / "00000001.wav", dtype="int16")
    assert not np.array_equal(x, y)


def test_worker_processes_write_the_same_files(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    generate_dataset({"root": str(one), "num_videos": 18}, 3)
    generate_dataset({"root": str(two), "num_videos": 18, "num_workers": 2}, 3)  # 2 batches
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:  # manifest.json too: root and num_workers are not part of it
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_rerun_with_same_config_is_skipped(tmp_path, caplog):
    root = tmp_path / "e"
    first = _small(root)
    wav = root / "audio" / "00000001.wav"
    stamp = wav.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger=gen.__name__):
        again = _small(root)
    assert "up to date" in caplog.text
    assert wav.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first, again)
    wav.unlink()  # a missing file forces a regeneration
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=gen.__name__):
        _small(root)
    assert "up to date" not in caplog.text and wav.is_file()
    _small(root, questions_per_video=[2, 3])  # another config replaces the folder
    assert all(2 <= n <= 3 for n in Counter(r["video_id"] for r in all_records(root)).values())


def test_a_crash_leaves_the_previous_dataset_untouched(tmp_path, monkeypatch):
    root = tmp_path / "e"
    _small(root)
    before = (root / "manifest.json").read_bytes()
    calls = []

    def boom(scene, *args, **kwargs):
        calls.append(scene["video_id"])
        if len(calls) == 3:
            raise OSError("disk full")

    monkeypatch.setattr(gen, "write_media", boom)
    with pytest.raises(OSError, match="disk full"):
        _small(root, seed=5)
    assert (root / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no temp folder left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        _small(root)
    assert (root / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"num_vidoes": 3}, r"unknown parameter\(s\) dataset.embedded.num_vidoes"),
        ({"split_fractions": {"train": 0.9, "val": 0.2, "test": 0.1}}, "split_fractions"),
        ({"questions_per_video": [6, 2]}, "questions_per_video"),
        ({"train_questions_per_video": [0, 3]}, "train_questions_per_video"),
        ({"sound_source": "/nowhere/font.sf2"}, "dataset.embedded.sound_source"),
        ({"splits_sound_source": {"dev": "note_bank"}}, "splits_sound_source"),
        ({"frame_size": 0}, "frame_size"),
        ({"visual_cue": "no"}, "dataset.embedded.visual_cue: expected true or false"),
    ],
)
def test_bad_parameters_are_named(tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        _small(tmp_path / "e", **extra)
    assert not (tmp_path / "e").exists()


def test_sf2_source_without_fluidsynth_says_what_to_install(tmp_path, monkeypatch):
    font = tmp_path / "font.sf2"
    font.write_bytes(b"RIFF")
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # import fluidsynth -> ImportError
    with pytest.raises(RuntimeError, match="pyfluidsynth"):
        _small(tmp_path / "e", splits_sound_source={"test": str(font)})
    assert not (tmp_path / "e").exists()


FLUID_SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def test_sf2_source_renders_a_split_with_fluidsynth(tmp_path):
    pytest.importorskip("fluidsynth", exc_type=ImportError)
    if not FLUID_SF2.is_file():
        pytest.skip("needs apt package fluid-soundfont-gm")
    root = tmp_path / "e"
    _small(root, splits_sound_source={"test": str(FLUID_SF2)})
    scenes = load_scenes(root)
    assert {s["sound_source"] for s in scenes if s["split"] == "test"} == {str(FLUID_SF2)}
    assert {s["sound_source"] for s in scenes if s["split"] != "test"} == {"note_bank"}
    test_scene = next(s for s in scenes if s["split"] == "test")
    stems = render_stems(test_scene)
    assert any(np.any(x) for x in stems.values())


def test_training_videos_can_ask_more_questions_than_val_and_test():
    cfg = gen.resolve_config({"num_videos": 40})
    scenes = gen.sample_scenes(cfg, SEED)
    split = {sc["video_id"]: sc["split"] for sc in scenes}
    records = gen.make_questions(scenes, np.random.default_rng(0), (2, 2), (6, 6))
    per_video = Counter(r["video_id"] for r in records)
    assert {per_video[v] for v, s in split.items() if s != "train"} == {2}
    train = [per_video[v] for v, s in split.items() if s == "train"]
    assert max(train) == 6 and np.mean(train) > 5  # at most one per template a scene answers
    same = gen.make_questions(scenes, np.random.default_rng(0), (2, 2), None)
    assert set(Counter(r["video_id"] for r in same).values()) == {2}
    # unset, it leaves the config hash (and so every generated folder) as it was
    unset = gen.config_hash(cfg, SEED)
    assert unset == gen.config_hash({k: v for k, v in cfg.items()
                                     if k != "train_questions_per_video"}, SEED)  # fmt: skip
    more = gen.resolve_config({"num_videos": 40, "train_questions_per_video": [6, 6]})
    assert gen.config_hash(more, SEED) != unset
