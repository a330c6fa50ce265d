"""Throughput and peak memory of the ``features`` encoders (prints a table; not a test).

    python benchmarks/features.py                       # synthetic media, 200 videos
    python benchmarks/features.py --videos 1000 --sizes 112 224 --questions 7000
    python benchmarks/features.py --project /path/to/project   # its data/02_intermediate
                                                                # video_index + qa_pairs
    python benchmarks/features.py --videos 40 --sizes 128 --grids 1x1 2x3 --tokens head block \
        --mp4 --questions 0 --out docs/results/features_cost.json  # the figures in the docs

Synthetic media (the default, generated in a temp folder): 10 s mono 16 kHz PCM16 wavs (a few
harmonic tones plus noise) and 10 JPEG frames per video (224 px, 1 fps), the layout of the
embedded dataset. With ``--project`` the run uses that project's ``video_index`` /
``qa_pairs`` (for example the embedded MiniMusic-AVQA after ``kedro run --pipelines=dataset``)
and also reports, for each visual input size, how often a video's nearest neighbour (cosine of
time-averaged features, leave-one-out) shares a visible instrument (``scene_metadata``).

Each stage runs the real node (``extract_*_features``) with the project's base parameters.
Timings are wall-clock of one pass after a warm-up on 5 videos (model load excluded);
peak memory is the process's ``ru_maxrss`` after the stage (cumulative). Visual stages run
for every ``--sizes`` x ``--grids`` x ``--tokens``; ``--mp4`` also writes each synthetic video
as an mp4 (H.264 224 px 25 fps + AAC, encoded with PyAV) and times both nodes with
``features.source: mp4`` (decode included). ``--out`` writes every stage, the load average
before and after, and the command to a JSON result file (rendered into docs/features.md by
``scripts/render_docs.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from r2scp_pipeline.pipelines.features.nodes import (  # noqa: E402
    extract_audio_features,
    extract_question_features,
    extract_visual_features,
)
from r2scp_pipeline.tensors import frame_to_tokens  # noqa: E402

INSTRUMENTS = [
    "violin",
    "cello",
    "piano",
    "flute",
    "trumpet",
    "guitar",
    "drum",
    "erhu",
    "accordion",
    "saxophone",
    "tuba",
    "xylophone",
    "bagpipe",
    "banjo",
    "bassoon",
]
TEMPLATES = [
    "Is the {a} playing?",
    "Is there a {a} sound?",
    "Is the {a} louder than the {b}?",
    "How many {a} are in the video?",
    "Where is the {a}?",
    "Which is the first sounding instrument, {a} or {b}?",
    "Is the {a} playing longer than the {b}?",
    "Is the {a} on the left of the {b}?",
    "Does the {a} always play during the video?",
    "What is the left instrument of the {a}?",
]


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): robust to a busy machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def synth_media(root: Path, n: int, seed: int = 0) -> pd.DataFrame:
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    t = np.arange(10 * 16000) / 16000
    rows = []
    for i in range(n):
        vid = f"{i:08d}"
        f0 = rng.uniform(110, 880, 2)
        wave = sum(0.1 / h * np.sin(2 * np.pi * f * h * t) for f in f0 for h in (1, 2, 3))
        wave = (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / f"{vid}.wav", wave, 16000, subtype="PCM_16")
        fdir = root / "frames" / vid
        fdir.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[0:224, 0:224]
        for s in range(10):
            img = np.empty((224, 224, 3), np.uint8)
            for c in range(3):
                fx, fy, ph = rng.uniform(0.01, 0.08, 2).tolist() + [rng.uniform(0, 6.3)]
                img[..., c] = (127 + 120 * np.sin(fx * xx + fy * yy + ph + s)).astype(np.uint8)
            Image.fromarray(img).save(fdir / f"{s + 1:06d}.jpg", quality=90)
        rows.append(
            {
                "video_id": vid,
                "split": "train",
                "audio_path": f"audio/{vid}.wav",
                "frames_dir": f"frames/{vid}",
                "video_path": None,
            }
        )
    return pd.DataFrame(rows)


def synth_mp4s(root: Path, vi: pd.DataFrame, fps: int = 25) -> pd.DataFrame:
    """Each synthetic video (wav + 10 frames) as ``videos/<id>.mp4``: H.264 at ``fps`` (each
    second's frame held for the second) and AAC audio. Returns ``vi`` with ``video_path``."""
    import av
    import soundfile as sf
    from PIL import Image

    (root / "videos").mkdir(parents=True, exist_ok=True)
    paths = []
    for vid, audio, frames in zip(vi["video_id"], vi["audio_path"], vi["frames_dir"], strict=True):
        wave, rate = sf.read(root / audio, dtype="float32")
        path = f"videos/{vid}.mp4"
        with av.open(str(root / path), "w", format="mp4") as out:
            video = out.add_stream("libx264", rate=fps)
            video.width = video.height = 224
            video.pix_fmt = "yuv420p"
            sound = out.add_stream("aac", rate=rate)
            sound.layout = "mono"
            for jpg in sorted((root / frames).iterdir()):
                img = np.asarray(Image.open(jpg).convert("RGB"))
                for _ in range(fps):
                    out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(video.encode())
            frame = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
            frame.sample_rate = rate
            out.mux(sound.encode(frame))
            out.mux(sound.encode())
        paths.append(path)
    return vi.assign(video_path=paths)


def synth_questions(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        a, b = rng.choice(INSTRUMENTS, 2, replace=False)
        texts.append(TEMPLATES[rng.integers(len(TEMPLATES))].format(a=a, b=b))
    return pd.DataFrame({"question_id": np.arange(n), "question": texts})


def nn_instrument_agreement(
    frame: pd.DataFrame, scenes: pd.DataFrame, pooled: bool = True
) -> tuple[float, float]:
    """Share of videos whose cosine nearest neighbour shares a visible instrument, and the same
    share over all pairs of videos (chance level). A video is its features averaged over T and
    (``pooled``) its S tokens, or (not ``pooled``) its S tokens concatenated (position kept)."""
    ids, x = frame_to_tokens(frame, "video_id")  # [N, T, S, D]
    col = "visible" if "visible" in scenes.columns else "instruments"
    inst = {str(v): set(s) for v, s in zip(scenes["video_id"], scenes[col], strict=True)}
    z = x.mean(axis=(1, 2)) if pooled else x.mean(axis=1).reshape(len(x), -1)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(axis=1)
    hit = float(np.mean([bool(inst[ids[i]] & inst[ids[j]]) for i, j in enumerate(nn)]))
    sets = [inst[i] for i in ids]
    pairs = [bool(a & b) for k, a in enumerate(sets) for b in sets[k + 1 :]]
    return hit, float(np.mean(pairs))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--videos", type=int, default=200, help="synthetic videos (or the first N of --project)"
    )
    ap.add_argument("--questions", type=int, default=2000, help="synthetic questions")
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224], help="visual input sizes")
    ap.add_argument(
        "--grids", nargs="+", default=None, help="visual grids ROWSxCOLS (default: the base one)"
    )
    ap.add_argument(
        "--tokens", nargs="+", default=None, help="visual tokens head / block (default: base)"
    )
    ap.add_argument("--mp4", action="store_true", help="also time decoding synthetic mp4s")
    ap.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
    ap.add_argument("--batch-size", type=int, default=None, help="visual frames per forward pass")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument(
        "--project", type=Path, default=None, help="use this project's data/02_intermediate"
    )
    args = ap.parse_args()

    base = yaml.safe_load((ROOT / "conf/base/parameters_features.yml").read_text())["features"]
    base.update(progress=False, num_threads=args.threads)
    if args.batch_size:
        base["visual"]["efficientnet_lite0"]["batch_size"] = args.batch_size
    grids = [[int(v) for v in g.split("x")] for g in args.grids] if args.grids else [None]
    tokens = args.tokens or [None]
    if args.mp4 and args.project:
        ap.error("--mp4 encodes the synthetic media: leave out --project")
    results: dict = {
        "command": "python benchmarks/features.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "load_average_start": round(os.getloadavg()[0], 2),
        "stages": [],
    }
    scenes = None
    with tempfile.TemporaryDirectory(prefix="features_bench_") as tmp:
        if args.project:
            inter = args.project / "data/02_intermediate"
            vi = pd.read_parquet(inter / "video_index.parquet").head(args.videos)
            qa = pd.read_parquet(inter / "qa_pairs.parquet")
            if (inter / "scene_metadata.parquet").exists():
                scenes = pd.read_parquet(inter / "scene_metadata.parquet")
            base["media_root"] = str(args.project)
            source = f"{args.project} ({len(vi)} videos, {len(qa)} questions)"
        else:
            t0 = time.perf_counter()
            vi = synth_media(Path(tmp), args.videos)
            if args.mp4:
                vi = synth_mp4s(Path(tmp), vi)
            qa = synth_questions(args.questions)
            base["media_root"] = tmp
            source = f"synthetic ({len(vi)} videos, {len(qa)} questions, made in {time.perf_counter() - t0:.0f} s)"
        import torch

        print(f"source: {source}")
        print(
            f"cpu cores: {os.cpu_count()}, torch threads: {args.threads or os.cpu_count()}, "
            f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
        )
        results |= {"source": source, "torch": torch.__version__, "threads": args.threads}
        header = (
            "stage",
            "items",
            "wall s",
            "items/s",
            "ms/item",
            "cpu ms/item",
            "dim",
            "maxrss MiB",
        )
        print("{:<30}{:>7}{:>9}{:>9}{:>9}{:>12}{:>6}{:>11}".format(*header))

        def timed(fn, *a):
            t, c = time.perf_counter(), cpu_seconds()
            out = fn(*a)
            return out, time.perf_counter() - t, cpu_seconds() - c

        def report(
            name: str, n: int, wall: float, cpu: float, dim: int | str = "", **extra
        ) -> None:
            print(
                f"{name:<30}{n:>7}{wall:>9.2f}{n / wall:>9.1f}{1000 * wall / n:>9.2f}"
                f"{1000 * cpu / n:>12.2f}{dim:>6}{maxrss_mib():>11.0f}"
            )
            results["stages"].append(
                {
                    "stage": name.strip(),
                    "items": n,
                    "wall_s": round(wall, 3),
                    "ms_per_item": round(1000 * wall / n, 3),
                    "cpu_ms_per_item": round(1000 * cpu / n, 3),
                    "dim": dim,
                    "maxrss_mib": round(maxrss_mib()),
                    "load_average": round(os.getloadavg()[0], 2),
                }
                | extra
            )

        print(f"{'(start)':<30}{'':>61}{maxrss_mib():>11.0f}")
        extracted = dict(base, source="extracted")
        extract_audio_features(vi.head(5), extracted)  # warm-up
        (_, stats), wall, cpu = timed(extract_audio_features, vi, extracted)
        pooling = base["audio"]["logmel"]["pooling"]
        report(f"audio logmel {pooling} (videos)", len(vi), wall, cpu, stats["dim"])

        for size in args.sizes:
            for grid in grids:
                for token in tokens:
                    params = copy.deepcopy(extracted)
                    eff = params["visual"]["efficientnet_lite0"]
                    eff["input_size"] = size
                    params["visual"]["grid"] = grid or params["visual"]["grid"]
                    eff["token"] = token or eff["token"]
                    rows, cols = params["visual"]["grid"]
                    extract_visual_features(vi.head(5), params)  # warm-up + model load
                    (frame, stats), wall, cpu = timed(extract_visual_features, vi, params)
                    name = f"visual {size}px {rows}x{cols} {eff['token']}"
                    setting = {"size": size, "grid": f"{rows}x{cols}", "token": eff["token"]}
                    report(name, len(vi), wall, cpu, stats["dim"], unit="video", **setting)
                    n_frames = len(vi) * stats["segments"]
                    report("  = per frame", n_frames, wall, cpu, unit="frame", **setting)
                    if scenes is not None:
                        hit, chance = nn_instrument_agreement(frame, scenes)
                        cells, _ = nn_instrument_agreement(frame, scenes, pooled=False)
                        results["stages"][-1] |= {
                            "nn_instrument": hit,
                            "nn_instrument_cells": cells,
                            "chance": chance,
                        }
                        print(
                            f"  nearest neighbour shares a visible instrument: {hit:.3f} "
                            f"(cells concatenated {cells:.3f}, chance {chance:.3f})"
                        )

        if args.mp4:
            mp4 = dict(base, source="mp4")
            extract_audio_features(vi.head(5), mp4)
            (_, stats), wall, cpu = timed(extract_audio_features, vi, mp4)
            report("audio from mp4 (videos)", len(vi), wall, cpu, stats["dim"], unit="video")
            extract_visual_features(vi.head(5), mp4)
            (_, stats), wall, cpu = timed(extract_visual_features, vi, mp4)
            rows, cols = base["visual"]["grid"]
            size = base["visual"]["efficientnet_lite0"]["input_size"]
            name = f"visual from mp4 {size}px {rows}x{cols}"
            report(name, len(vi), wall, cpu, stats["dim"], unit="video")

        if len(qa):
            extract_question_features(qa.head(5), base)  # warm-up + model load
            (_, stats), wall, cpu = timed(extract_question_features, qa, base)
            name = f"question minilm (of {len(qa)} q)"
            report(name, stats["unique_texts"], wall, cpu, stats["dim"])

    results["load_average_end"] = round(os.getloadavg()[0], 2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
