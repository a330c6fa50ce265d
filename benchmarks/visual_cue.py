"""How many audio questions do the frames answer? (the embedded generator's visual cue)

The embedded generator draws a cue on every visible instrument in each second it sounds: a warm
glow and a small hop (docs/dataset_embedded.md). A visual expert can then read from the pixels
part of what the audio questions ask: which instrument sounds, and when it comes in. This
diagnostic re-renders the test videos' frames *without* the cue (the same scenes, backgrounds,
sway and JPEG quality: the generator's `write_frames(..., cue=False)`), encodes them with the
run's visual feature settings through the features pipeline's own extraction, scores the frozen
stage-I experts of the run on the test questions twice: with the frames as written and with
the cue-free ones. Per question type it reports each expert's accuracy alone; only the visual
expert reads frames, so the audio and text experts serve as a check (their scores must not
move).

What the visual expert loses without the cue, on questions of the Audio and Audio-Visual types,
is what the pixels answered in place of the sound. Before scoring, one test video is re-rendered
*with* the cue and compared with its stored frames: if they differ, the generator no longer
draws what the run used and the benchmark stops.

    python benchmarks/visual_cue.py --data data --out docs/results/visual_cue.json

Needs a default run's data root (embedded dataset, `01_raw/embedded/scenes.json`, the features
and `06_models/stage1_experts.pt`) and the project's `conf/` for the features parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from kedro.config import OmegaConfigLoader
from PIL import Image

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.media import extract_visual_features
from r2scp_pipeline.pipelines.dataset.generator import write_frames
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS
from r2scp_pipeline.tensors import frame_to_tokens
from r2scp_pipeline.training import load_model, predict_expert_log_probs
from r2scp_pipeline.vocabulary import EXPERTS


def check_rerender(scene: dict, stored: Path, tmp: Path, size: int, quality: int) -> None:
    """Re-rendering with the cue must give the stored frames, or the comparison is void."""
    tmp.mkdir(parents=True)
    write_frames(scene, tmp, size, quality, cue=True)
    for path in sorted(stored.glob("*.jpg")):
        a, b = np.asarray(Image.open(path)), np.asarray(Image.open(tmp / path.name))
        if a.shape != b.shape or np.abs(a.astype(int) - b.astype(int)).max() > 0:
            raise SystemExit(f"{path}: re-rendering video {scene['video_id']} with the cue does "
                             "not give the stored frame (was the generator changed since the "
                             "run?): the comparison would not be fair")  # fmt: skip


def accuracy_by_type(qa: pd.DataFrame, correct: dict[str, np.ndarray]) -> list[dict]:
    """Rows ``{type, n, <expert>: accuracy %}`` per modality/sub-type, per modality, and all."""
    frame = qa.assign(**{m: c.astype(float) for m, c in correct.items()})
    out = []
    groups = [("All", frame)]
    groups += [(m, g) for m, g in frame.groupby("modality", sort=False)]
    groups += [(f"{m} {s}", g) for (m, s), g in frame.groupby(["modality", "subtype"], sort=False)]
    for name, g in groups:
        out.append({"type": name, "n": len(g),
                    **{m: round(100 * g[m].mean(), 2) for m in correct}})  # fmt: skip
    return out


def cue_free_features(scenes: dict[str, dict], videos: list[str], frames: Path,
                      generator: dict, params: dict) -> np.ndarray:  # fmt: skip
    """Visual features ``[V', T, S, D]`` of ``videos`` drawn without the cue, through the
    features pipeline's own extraction (``params``: the run's ``features`` block). The first
    video is drawn once with the cue and checked against its stored frames (``frames``)."""
    size, quality = int(generator["frame_size"]), int(generator["jpeg_quality"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        check_rerender(scenes[videos[0]], frames / videos[0], tmp / "check", size, quality)
        for vid in videos:
            (tmp / "frames" / vid).mkdir(parents=True)
            write_frames(scenes[vid], tmp / "frames" / vid, size, quality, cue=False)
        index = pd.DataFrame({"video_id": videos,
                              "frames_dir": [str(tmp / "frames" / v) for v in videos]})  # fmt: skip
        table, _ = extract_visual_features(
            index, {**params, "progress": False, "source": "extracted", "on_error": "raise"}
        )
    return frame_to_tokens(table, "video_id", ids=videos)[1]


def read_scenes(data: Path) -> tuple[dict[str, dict], dict]:
    """The embedded dataset's scenes by video id and the generator's config; a dataset drawn
    without the cue has nothing to remove."""
    path = data / "01_raw/embedded/scenes.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: the cue exists in the embedded dataset only "
                         "(run `kedro run --pipelines=dataset,features,pretrain` first)")  # fmt: skip
    scenes = json.loads(path.read_text())
    generator = scenes["generator"]["config"]
    if not generator.get("visual_cue", True):
        raise SystemExit(f"{path}: this dataset was drawn without the visual cue "
                         "(dataset.embedded.visual_cue: false): there is nothing to remove")  # fmt: skip
    return {s["video_id"]: s for s in scenes["videos"]}, generator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--conf", type=Path, default=Path("conf"),
                        help="the project's conf folder (features parameters)")  # fmt: skip
    parser.add_argument("--env", default=None, help="configuration environment of the run")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tick = time.perf_counter()
    scenes, generator = read_scenes(args.data)
    features = OmegaConfigLoader(str(args.conf), env=args.env, **CONFIG_LOADER_ARGS)["parameters"][
        "features"
    ]
    tables = {name: pd.read_parquet(args.data / folder / f"{name}.parquet") for folder, name in (
        ("02_intermediate", "qa_pairs"), ("04_feature", "audio_features"),
        ("04_feature", "visual_features"), ("04_feature", "question_features"))}  # fmt: skip
    tensors = build_tensors(**tables)
    rows = tensors.indices(args.split)
    videos = [tensors.video_ids[i] for i in tensors.videos_of(args.split)]
    unknown = [v for v in videos if v not in scenes]
    if unknown:
        raise SystemExit(f"{args.data}/01_raw/embedded/scenes.json: no scene for video(s) "
                         f"{unknown[:5]} of qa_pairs")  # fmt: skip
    model = load_model(torch.load(args.data / "06_models/stage1_experts.pt", map_location="cpu",
                                  weights_only=False)).eval()  # fmt: skip

    def correct() -> dict[str, np.ndarray]:
        logp = predict_expert_log_probs(model, tensors, args.split)
        return {m: (logp[m].argmax(-1) == tensors.answer[rows]).numpy() for m in EXPERTS}

    with_cue = correct()
    x = cue_free_features(scenes, videos, args.data / "01_raw/embedded/frames", generator,
                          features)  # fmt: skip
    if x.shape[1:] != tuple(tensors.visual.shape[1:]):
        raise SystemExit(f"cue-free features have shape {x.shape[1:]}, the run's "
                         f"{tuple(tensors.visual.shape[1:])}: pass the run's --conf / --env")  # fmt: skip
    pos = torch.as_tensor([tensors.video_ids.index(v) for v in videos])
    plain = torch.from_numpy(np.ascontiguousarray(x)).to(tensors.visual.dtype)
    changed = (plain - tensors.visual[pos]).abs().amax(-1) > 1e-4  # [V', T, S]: cue removed
    tensors.visual[pos] = plain
    without_cue = correct()

    qa = tables["qa_pairs"].set_index("question_id").loc[tensors.question_id[rows]].reset_index()
    report = json.dumps({
        "command": "python benchmarks/visual_cue.py " + " ".join(argv or sys.argv[1:]),
        "split": args.split, "videos": len(videos), "questions": len(rows),
        "tokens_changed": round(changed.float().mean().item(), 4),
        "with_cue": accuracy_by_type(qa, with_cue),
        "without_cue": accuracy_by_type(qa, without_cue),
        "seconds": round(time.perf_counter() - tick, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg())},
    }, indent=1)  # fmt: skip
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
