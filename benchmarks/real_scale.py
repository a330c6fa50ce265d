"""The whole chain at MUSIC-AVQA's (or AVQA's) size: time per stage, seconds per stage-II
epoch, peak RSS.

    python benchmarks/real_scale.py --scale 0.05       # quick check (~460 videos)
    python benchmarks/real_scale.py                    # full size: writes docs/results/real_scale.json
    python benchmarks/real_scale.py --protocol video_disjoint --epochs 2 --keep /tmp/rs
    python benchmarks/real_scale.py --benchmark avqa   # AVQA's size: docs/results/real_scale_avqa.json

``--benchmark avqa`` writes the AVQA release's format instead (``train_qa.json``,
``val_qa.json``: 57,015 videos, 57,335 four-way multiple-choice questions, :data:`FULL_AVQA`)
and features of 10 seconds per video, and runs the same stages with ``dataset.source: avqa``
(the ChoiceDecoder, candidate texts through the question encoder).

Writes, in a work folder of its own (a temporary one unless ``--keep DIR``), official-format
annotations at the size of MUSIC-AVQA (9,288 videos, 45,867 questions: train 32,170, val
4,568 on 3,815 videos, test 9,129 on 6,399 videos, 2,296 videos with both val and test
questions, every video with training questions) filled from the 33 real templates of
``r2scp_pipeline.avqa.TEMPLATES``, and synthetic ``<video_id>.npy`` features of the official
shapes (VGGish ``[60, 128]``, ResNet-18 ``[60, 512]``). Then it runs ``kedro run`` for
``dataset``, ``features``, ``build_index``, ``pretrain`` and ``mix`` (one process each, default
model sizes of ``conf/base``, ``--epochs`` epochs per stage, ``--joint-epochs`` for the joint
space) in a copy of the project configuration inside the work folder, so the user's ``data/``
and ``mlflow.db`` are never touched. ``--scale`` multiplies every count.

Per stage it records the wall time, the CPU time and the peak resident memory of the
``kedro run`` process (``wait4`` rusage), and the load average before and after (the machine
may be shared). Stage II's seconds per epoch come from ``mix_history.json`` (training steps;
the per-epoch validation and the one-off expert cache are reported separately).
``--spatial-videos N`` also writes N spatial ResNet-18 maps ``[60, 512, 14, 14]`` and times
the ``features`` pipeline's precomputed loader on them (a full set is too big for this disk);
``--breakdown N`` times stage II on N training questions with and without the ranking loss's
extra passes and training-time dropping (CPU ms per sample).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from r2scp_pipeline import avqa  # noqa: E402

#: MUSIC-AVQA's size (GeWu-Lab/MUSIC-AVQA json_update; see the module docstring).
FULL = {
    "videos": 9288,
    "questions": {"train": 32170, "val": 4568, "test": 9129},
    "val_videos": 3815,
    "test_videos": 6399,
    "val_and_test_videos": 2296,
}
#: AVQA's size (Yang et al., ACM MM 2022: 57,015 videos, 57,335 questions). The split of the
#: release into train_qa.json / val_qa.json is not known here: ``test_fraction`` of the videos
#: go to val_qa.json (the project's test split) as an assumption; the pipeline then holds out
#: ``dataset.avqa.val_fraction`` of the training videos as val.
FULL_AVQA = {"videos": 57015, "questions": 57335, "test_fraction": 0.3, "seconds": 10}
STAGES = ("dataset", "features", "build_index", "pretrain", "mix")
_PLACEHOLDER = re.compile(r"<(Object|LR|FL|LL|TH|BA|LRer)>")
VALUES = {
    "Object": avqa.INSTRUMENTS,
    "LR": ("left", "middle", "right"),
    "FL": ("first", "last"),
    "LL": ("loudest", "lowest"),
    "TH": ("first", "second", "third"),
    "BA": ("before", "after"),
    "LRer": ("leftest", "rightest"),
}
COUNTS = ("zero", "one", "two", "three", "four", "five")


def answers_for(template: str) -> tuple[str, ...]:
    """Plausible answers of a template (any answer of ``avqa.ANSWERS`` is valid input)."""
    if template.startswith(("Is ", "Are ")):
        return ("yes", "no")
    if template.startswith("How many"):
        return COUNTS
    if template == "Where is the performance?":
        return ("indoor", "outdoor")
    if template.startswith("Where"):
        return ("left", "middle", "right")
    return avqa.INSTRUMENTS


def plan_splits(scale: float, rng: np.random.Generator) -> dict[str, Any]:
    """Video ids and, per split, the videos with questions there and the question count."""
    n = max(8, round(FULL["videos"] * scale))
    ids = [f"{i:08d}" for i in range(1, n + 1)]
    n_val = max(2, round(FULL["val_videos"] * scale))
    n_test = max(2, round(FULL["test_videos"] * scale))
    n_both = min(round(FULL["val_and_test_videos"] * scale), n_val - 1, n_test - 1)
    order = rng.permutation(n)
    both = order[:n_both]
    val_only = order[n_both:n_val]
    test_only = order[n_val : n_val + n_test - n_both]
    videos = {
        "train": np.arange(n),  # every video has training questions (see module docstring)
        "val": np.concatenate([both, val_only]),
        "test": np.concatenate([both, test_only]),
    }
    questions = {s: max(len(videos[s]), round(q * scale)) for s, q in FULL["questions"].items()}
    return {"ids": ids, "videos": videos, "questions": questions}


def write_annotations(folder: Path, plan: dict[str, Any], rng: np.random.Generator) -> dict:
    """``avqa-{train,val,test}.json`` in the official format; returns the counts written."""
    folder.mkdir(parents=True, exist_ok=True)
    qid = 0
    counts: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        vids = plan["videos"][split]
        n_q = plan["questions"][split]
        # each video of the split gets one question, the rest go to random videos of the split
        owner = np.concatenate([vids, rng.choice(vids, n_q - len(vids))])
        templates = rng.integers(0, len(avqa.TEMPLATES), n_q)
        records = []
        for v, t in zip(owner, templates, strict=True):
            modality, subtype, template = avqa.TEMPLATES[t]
            values = [str(rng.choice(VALUES[m])) for m in _PLACEHOLDER.findall(template)]
            records.append(
                {"video_id": plan["ids"][v], "question_id": qid,
                 "type": json.dumps([modality, subtype]), "question_content": template,
                 "templ_values": json.dumps(values), "question_deleted": 0,
                 "anser": str(rng.choice(answers_for(template)))}
            )  # fmt: skip
            qid += 1
        (folder / f"avqa-{split}.json").write_text(json.dumps(records), encoding="utf-8")
        counts[split] = {"questions": n_q, "videos": len(vids)}
    counts["videos"] = len(plan["ids"])
    counts["val_and_test_videos"] = len(set(plan["videos"]["val"]) & set(plan["videos"]["test"]))
    return counts


#: Words of the synthetic AVQA questions and candidates (many distinct texts, like the release).
_THINGS = ("dog", "cat", "car", "train", "baby", "man", "woman", "bird", "engine", "drum",
           "guitar", "piano", "crowd", "horse", "boat", "plane", "phone", "door", "bell", "saw")
_DOING = ("barking", "singing", "crying", "driving", "playing", "talking", "ringing", "running",
          "cooking", "cheering", "typing", "cutting", "flying", "honking", "knocking")
_PLACES = ("a kitchen", "the street", "a garden", "a stage", "a beach", "a forest", "a car",
           "a classroom", "a stadium", "a river")
_AVQA_TEMPLATES = {
    "Which": "Which {t} makes the sound in {p}?",
    "Come From": "Where does the {d} sound of the {t} come from?",
    "Happening": "What is the {t} in {p} doing?",
    "Where": "Where is the {t} that is {d}?",
    "Why": "Why is the {t} {d}?",
    "Before Next": "What happens after the {t} starts {d}?",
    "When": "When does the {t} start {d} in {p}?",
    "Used For": "What is the {t} in {p} used for?",
}


def plan_avqa(scale: float, rng: np.random.Generator) -> dict[str, Any]:
    """AVQA-size plan: VGGSound-style video names, the videos of val_qa.json, questions/video."""
    n = max(8, round(FULL_AVQA["videos"] * scale))
    ids = [f"v{i:010d}_{int(rng.integers(0, 300)):06d}" for i in range(n)]
    n_q = max(n, round(FULL_AVQA["questions"] * scale))
    owner = np.concatenate([np.arange(n), rng.choice(n, n_q - n)])  # every video asked once
    test = rng.permutation(n)[: max(2, round(FULL_AVQA["test_fraction"] * n))]
    return {"ids": ids, "owner": owner, "test": set(int(v) for v in test)}


def write_avqa_annotations(folder: Path, plan: dict[str, Any], rng: np.random.Generator) -> dict:
    """``train_qa.json`` and ``val_qa.json`` in the AVQA release's format; returns counts."""
    folder.mkdir(parents=True, exist_ok=True)
    types = list(_AVQA_TEMPLATES)
    phrases = [f"{t} {d}" for t in _THINGS for d in _DOING] + [f"in {p}" for p in _PLACES]
    files: dict[str, list[dict[str, Any]]] = {"train_qa.json": [], "val_qa.json": []}
    for qid, v in enumerate(plan["owner"]):
        qtype = types[int(rng.integers(len(types)))]
        text = _AVQA_TEMPLATES[qtype].format(t=rng.choice(_THINGS), d=rng.choice(_DOING),
                                             p=rng.choice(_PLACES))  # fmt: skip
        choices = [str(c) for c in rng.choice(phrases, 4, replace=False)]
        name = "val_qa.json" if int(v) in plan["test"] else "train_qa.json"
        files[name].append({
            "id": qid, "video_name": plan["ids"][v], "video_id": int(v) + 1,
            "question_text": text, "multi_choice": choices, "answer": int(rng.integers(4)),
            "question_relation": str(rng.choice(["Audio", "Visual", "Both"])),
            "question_type": qtype,
        })  # fmt: skip
    counts: dict[str, Any] = {}
    for name, records in files.items():
        (folder / name).write_text(json.dumps(records), encoding="utf-8")
        counts[name] = {"questions": len(records),
                        "videos": len({r["video_name"] for r in records})}  # fmt: skip
    counts["videos"] = len(plan["ids"])
    return counts


def write_features(
    folder: Path, ids: list[str], seed: int, seconds: int = 60
) -> dict[str, int]:
    """Official-shape ``.npy`` files per video (``seconds`` rows); returns bytes per modality."""
    sizes = {}
    for name, dim in (("vggish", 128), ("resnet18", 512)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, dim])
        total = 0
        for vid in ids:
            x = rng.standard_normal((seconds, dim), dtype=np.float32)
            np.save(folder / name / f"{vid}.npy", x)
            total += x.nbytes
        sizes[name] = total
    return sizes


def make_project(dest: Path) -> Path:
    """A project copy (configuration + metadata) whose ``data/`` and MLflow store are its own."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "conf", dest / "conf", dirs_exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    (dest / "src").mkdir(exist_ok=True)
    mlflow_yml = dest / "conf" / "base" / "mlflow.yml"
    text = mlflow_yml.read_text()
    mlflow_yml.write_text(text.replace("sqlite:///mlflow.db", f"sqlite:///{dest / 'mlflow.db'}"))
    return dest


def run_stage(project: Path, stage: str, params: dict[str, Any], log: Path) -> dict[str, float]:
    """``kedro run --pipelines=stage`` in ``project``: wall, CPU, peak RSS, load averages."""
    cmd = [sys.executable, "-m", "kedro", "run", f"--pipelines={stage}",
           "--params=" + ",".join(f"{k}={v}" for k, v in params.items())]  # fmt: skip
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", COLUMNS="200",
               PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # fmt: skip
    load_before = os.getloadavg()
    tick = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - tick
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"kedro run --pipelines={stage} failed ({log}):\n{tail}")
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def time_spatial(folder: Path, n: int, seed: int) -> dict[str, Any]:
    """Write ``n`` spatial maps ``[60, 512, 14, 14]`` and time the precomputed loader on them."""
    import pandas as pd

    from r2scp_pipeline.pipelines.features.nodes import extract_visual_features

    sdir = folder / "resnet18_spatial"
    sdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 14])
    ids = [f"s{i:07d}" for i in range(n)]
    for vid in ids:
        np.save(sdir / f"{vid}.npy", rng.standard_normal((60, 512, 14, 14), dtype=np.float32))
    per_video = (sdir / f"{ids[0]}.npy").stat().st_size
    index = pd.DataFrame({"video_id": ids, "frames_dir": [None] * n})
    params = {"segments": 10, "on_error": "raise", "num_threads": 1, "progress": False,
              "visual": {"encoder": "precomputed", "grid": [1, 3],  # the default grid
                         "precomputed": {"dir": str(sdir), "pattern": "{video_id}.npy"}}}  # fmt: skip
    tick = time.perf_counter()
    out = extract_visual_features(index, params)
    seconds = time.perf_counter() - tick
    table = out[0] if isinstance(out, tuple) else out
    return {
        "videos": n,
        "bytes_per_video": per_video,
        "seconds": round(seconds, 2),
        "seconds_per_video": round(seconds / n, 3),
        "full_scale_gb": round(per_video * FULL["videos"] / 1e9, 1),
        "full_scale_minutes": round(seconds / n * FULL["videos"] / 60, 1),
        "feature_rows": len(table),
    }


TABLES = {
    "qa_pairs": "data/02_intermediate/qa_pairs.parquet",
    "audio_features": "data/04_feature/audio_features.parquet",
    "visual_features": "data/04_feature/visual_features.parquet",
    "question_features": "data/04_feature/question_features.parquet",
    "memory_bank_audio": "data/05_model_input/memory_bank_audio.parquet",
    "memory_bank_visual": "data/05_model_input/memory_bank_visual.parquet",
    "neighbors": "data/05_model_input/neighbors.parquet",
}


def stage_two_breakdown(project: Path, n_train: int, threads: int) -> dict[str, Any]:
    """CPU ms per stage-II training sample on ``n_train`` training questions of the run's own
    tables, with the default loss, without the ranking loss's two extra passes (R- and X_gt
    for the dropped samples) and without training-time dropping: where stage II's time goes."""
    import pandas as pd
    import yaml

    from r2scp_pipeline.data import build_tensors
    from r2scp_pipeline.training import model_checkpoint, train_stage_one, train_stage_two

    tables = {k: pd.read_parquet(project / v) for k, v in TABLES.items()}
    qa = tables["qa_pairs"]
    tables["qa_pairs"] = pd.concat(
        [qa[qa["split"] == "train"].iloc[:n_train], qa[qa["split"] == "val"].iloc[:256]]
    )

    def conf(name: str) -> dict[str, Any]:
        return yaml.safe_load((ROOT / "conf/base" / f"parameters_{name}.yml").read_text())

    model_params = conf("model")
    tensors = build_tensors(**tables, n_neighbors=model_params["model"]["n_retrieve"])

    def loop(stage: str, **over: Any) -> dict[str, Any]:
        p = conf(stage)[stage]
        p.update(epochs=1, patience=10**6, checkpoint_dir=None, threads=threads, **over)
        return p

    stage_one, _ = train_stage_one(
        tensors, model_params["model"], loop("pretrain"), model_params["train_missing"], seed=0
    )
    ckpt = model_checkpoint(stage_one, {"stage_one": True})
    out: dict[str, Any] = {"train_questions": int((tensors.split == "train").sum())}
    variants = {
        "default": {},
        "no_rank_loss": {"rank_loss_weight": 0.0},
        "no_rank_loss_no_drop": {"rank_loss_weight": 0.0, "drop_rate": 0.0},
    }
    for name, over in variants.items():
        _, summary = train_stage_two(
            ckpt, tensors, model_params["model"], loop("mix", **over),
            model_params["train_missing"], seed=0,
        )  # fmt: skip
        t = summary["timing"]
        out[name] = {
            "cpu_ms_per_sample": round(1000 * t["train_cpu_seconds"] / t["train_samples"], 2),
            "wall_ms_per_sample": round(1000 * t["train_seconds"] / t["train_samples"], 2),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the benchmark's size")
    ap.add_argument("--benchmark", default="music_avqa", choices=("music_avqa", "avqa"),
                    help="whose size and annotation format (avqa: multiple choice)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of stage I and of stage II")
    ap.add_argument("--joint-epochs", type=int, default=2, help="epochs of the joint space")
    ap.add_argument("--protocol", default="official", choices=("official", "video_disjoint"))
    ap.add_argument("--spatial-videos", type=int, default=0, help="also time N spatial maps")
    ap.add_argument("--breakdown", type=int, default=0,
                    help="also time stage II on N training questions without the ranking "
                    "loss and without dropping (where its time goes)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1, help="torch threads of both stages")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="work folder to use and keep (default: temporary)")
    ap.add_argument("--out", type=Path, help="result JSON (default: docs/results/real_scale.json "
                    "at --scale 1, else $TMPDIR/r2scp_real_scale.json)")  # fmt: skip
    args = ap.parse_args(argv)
    if not 0 < args.scale <= 1:
        ap.error("--scale must be in (0, 1]")

    work = args.keep or Path(tempfile.mkdtemp(prefix="r2scp_real_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    avqa_run = args.benchmark == "avqa"
    suffix = "_avqa" if avqa_run else ""
    out = args.out or (
        ROOT / f"docs/results/real_scale{suffix}.json"
        if args.scale == 1
        else Path(tempfile.gettempdir()) / f"r2scp_real_scale{suffix}.json"
    )
    rng = np.random.default_rng(args.seed)
    result: dict[str, Any] = {
        "command": "python benchmarks/real_scale.py " + " ".join(argv or sys.argv[1:]),
        "scale": args.scale,
        "benchmark": args.benchmark,
        "protocol": args.protocol,
        "epochs": args.epochs,
        "joint_space_epochs": args.joint_epochs,
        "torch_threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "shared": "other jobs may run on these CPUs: see the load averages",
        },  # fmt: skip
        "stages": {},
    }
    try:
        tick = time.perf_counter()
        if avqa_run:
            plan = plan_avqa(args.scale, rng)
            result["data"] = write_avqa_annotations(work / "annotations", plan, rng)
            seconds = FULL_AVQA["seconds"]
        else:
            plan = plan_splits(args.scale, rng)
            result["data"] = write_annotations(work / "annotations", plan, rng)
            seconds = 60
        result["data"]["feature_bytes"] = write_features(
            work / "features", plan["ids"], args.seed, seconds
        )
        result["data"]["write_s"] = round(time.perf_counter() - tick, 1)
        print(f"wrote annotations and features in {result['data']['write_s']} s: "
              f"{result['data']}", flush=True)  # fmt: skip

        project = make_project(work / "project")
        source = (
            {"dataset.source": "avqa", "dataset.avqa.annotations_dir": work / "annotations"}
            if avqa_run
            else {"dataset.source": "music_avqa",
                  "dataset.music_avqa.annotations_dir": work / "annotations"}
        )  # fmt: skip
        params = {
            **source,
            "dataset.protocol": args.protocol,
            "features.audio.encoder": "precomputed",
            "features.audio.precomputed.dir": work / "features" / "vggish",
            "features.visual.encoder": "precomputed",
            "features.visual.precomputed.dir": work / "features" / "resnet18",
            "build_index.joint_space.epochs": args.joint_epochs,
            "pretrain.epochs": args.epochs,
            "pretrain.patience": 1000,
            "mix.epochs": args.epochs,
            "mix.patience": 1000,
            "pretrain.threads": args.threads,
            "mix.threads": args.threads,
        }
        for stage in STAGES:
            stats = run_stage(project, stage, params, work / f"{stage}.log")
            result["stages"][stage] = stats
            print(f"{stage}: {stats}", flush=True)

        mix = json.loads((project / "data/08_reporting/mix_history.json").read_text())
        pre = json.loads((project / "data/08_reporting/pretrain_history.json").read_text())
        for name, summary in (("stage_one", pre), ("stage_two", mix)):
            t, n_ep = summary.get("timing", {}), max(int(summary.get("epochs_run", 0)), 1)
            result[name] = {
                "train_questions": summary.get("num_train_questions"),
                "epochs_run": summary.get("epochs_run"),
                "train_s_per_epoch": round(t.get("train_seconds", 0.0) / n_ep, 1),
                "train_cpu_s_per_epoch": round(t.get("train_cpu_seconds", 0.0) / n_ep, 1),
                "val_s_per_epoch": round(t.get("eval_seconds", 0.0) / n_ep, 1),
                "samples_per_s": t.get("train_samples_per_s"),
                "cache_s": t.get("cache_seconds"),
            }
        if args.breakdown:
            result["stage_two_breakdown"] = stage_two_breakdown(
                project, args.breakdown, args.threads
            )
            print(f"stage II breakdown: {result['stage_two_breakdown']}", flush=True)
        if args.spatial_videos:
            result["spatial"] = time_spatial(work / "features", args.spatial_videos, args.seed)
        peak = max(s["peak_rss_mb"] for s in result["stages"].values())
        epoch_s = result["stage_two"]["train_s_per_epoch"]
        result["targets"] = {
            "stage_two_epoch_s": {"target": 60, "measured": epoch_s, "met": epoch_s <= 60},
            "peak_rss_gb": {"target": 8, "measured": round(peak / 1024, 2), "met": peak <= 8192},
        }
        result["total_wall_s"] = round(sum(s["wall_s"] for s in result["stages"].values()), 1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
