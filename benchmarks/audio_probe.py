"""How well do the audio features identify the sounding instruments? (a diagnostic)

Trains small probes on the training videos of an existing run (``data/`` after
``kedro run --pipelines=dataset,features``) to predict the *set* of sounding instruments
(``scene_metadata.sounding``, embedded dataset only) from the audio features, and reports on the
test videos: exact-set accuracy, recall and precision of the instrument labels.

    python benchmarks/audio_probe.py --out docs/results/audio_probe.json

Probes: a linear map and an MLP on the video's pooled ``[mean | std]`` log-mel statistics, and
the model's own ``AudioFrontEnd`` (trained directly on the labels, mean+max pooled). If even the
directly supervised front end finds few of the sounding instruments, the audio expert cannot
learn much from questions alone on this much data. With ``04_feature/grounding_labels.parquet``
(what sounds in each second, the targets of stage I's grounding heads) one more probe, the
front end plus one expert layer, learns from those per-second labels and is scored on the
same video-level sets (an instrument counts as found when any second has it above 0.5).

``--generated N`` asks whether that probe is short of examples or of steps: it trains it again
with N generated audio-only videos (:mod:`r2scp_pipeline.audio_pretraining`, the audio encoder's
pretraining set, built with the run's ``conf/`` parameters) added to the training videos, and
once more on the training videos alone for as many more epochs (the same number of steps).

    python benchmarks/audio_probe.py --generated 2800 --out docs/results/audio_probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from kedro.config import OmegaConfigLoader

from r2scp_pipeline import avqa
from r2scp_pipeline.audio_pretraining import audio_pretraining_set
from r2scp_pipeline.grounding import presence
from r2scp_pipeline.model import AudioFrontEnd, ModalityExpert
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS
from r2scp_pipeline.tensors import frame_to_tokens


def scores(p: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    hit, yb = p > 0.5, y.bool()
    tp, fn, fp = (hit & yb).sum().item(), (~hit & yb).sum().item(), (hit & ~yb).sum().item()
    return {"exact_set": round((hit == yb).all(1).float().mean().item(), 3),
            "recall": round(tp / max(tp + fn, 1), 3), "precision": round(tp / max(tp + fp, 1), 3)}  # fmt: skip


def train(net, x, y, tr, te, epochs: int, batch: int | None = None,
          y_eval: torch.Tensor | None = None) -> dict[str, float]:  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    idx = torch.nonzero(tr).squeeze(1)
    for _ in range(epochs):
        net.train()
        order = idx[torch.randperm(len(idx))] if batch else idx
        for i in range(0, len(order), batch or len(order)):
            b = order[i : i + (batch or len(order))]
            loss = F.binary_cross_entropy_with_logits(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        p = net(x[te]).sigmoid()
    if y_eval is not None:  # per-second outputs [B, T, K] -> the video's set
        return scores(p.max(1).values, y_eval[te])
    return scores(p, y[te])


class FrontEndProbe(torch.nn.Module):
    def __init__(self, n_mels: int, frames: int) -> None:
        super().__init__()
        self.fe = AudioFrontEnd(n_mels, frames, 128, 16, 3, 64, 0.1)
        self.out = torch.nn.Linear(256, len(avqa.INSTRUMENTS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fe(x)  # [B, T*P, d]
        return self.out(torch.cat([h.mean(1), h.max(1).values], 1))


class SecondProbe(torch.nn.Module):
    """AudioFrontEnd + one expert layer, a label set per second (the grounding heads' task)."""

    def __init__(self, n_mels: int, frames: int, tokens: int = 3) -> None:
        super().__init__()
        self.tokens = tokens
        self.fe = AudioFrontEnd(n_mels, frames, 128, 16, tokens, 64, 0.1)
        self.expert = ModalityExpert(128, 4, 1, 2, 0.1)
        self.out = torch.nn.Linear(128, len(avqa.INSTRUMENTS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expert(self.fe(x))  # [B, T*P, d]
        return self.out(h.view(x.shape[0], x.shape[1], self.tokens, -1).mean(2))  # [B, T, K]


def second_labels(path: Path, ids: list[str], segments: int) -> torch.Tensor | None:
    """``grounding_labels`` audio rows -> [V, T, K] (None when the file is absent or empty)."""
    if not path.exists():
        return None
    labels = pd.read_parquet(path)
    labels = labels[labels["modality"] == "audio"]
    if labels.empty:
        return None
    pos = {v: i for i, v in enumerate(ids)}
    y = torch.zeros(len(ids), segments, len(avqa.INSTRUMENTS))
    for vid, t, names in zip(labels["video_id"], labels["t"], labels["instruments"], strict=True):
        for c in names:
            y[pos[vid], t, avqa.INSTRUMENTS.index(c)] = 1.0
    return y


def generated_probes(args, x, y, per_second, tr, te) -> dict[str, dict[str, float]]:
    """The per-second probe with ``args.generated`` generated videos added to its training
    videos, and on the training videos alone for as many steps (more epochs)."""
    params = OmegaConfigLoader(str(args.conf), env=args.env, **CONFIG_LOADER_ARGS)["parameters"]
    encoder = {**params["pretrain"]["audio_encoder"], "videos": args.generated}
    extra = audio_pretraining_set(params["dataset"], params["features"], encoder,
                                  int(params["seed"]))  # fmt: skip
    if extra["x"].numel() == 0:
        raise SystemExit(f"no generated videos: {extra['meta']['skipped']}")
    n = len(extra["x"])
    sounds = presence(extra["y"])  # the loud / rhythmic tags are not probed
    x_all, sec_all = torch.cat([x, extra["x"]]), torch.cat([per_second, sounds])
    y_all = torch.cat([y, sounds.amax(1)])  # a generated video's set: what sounds at all
    no = torch.zeros(n, dtype=torch.bool)
    tr_all, te_all = torch.cat([tr, torch.ones(n, dtype=torch.bool)]), torch.cat([te, no])
    longer = round(args.epochs * (int(tr.sum()) + n) / int(tr.sum()))
    name = "AudioFrontEnd + expert, per-second labels"
    return {
        f"{name}, + {n} generated videos ({args.epochs} epochs)": train(
            SecondProbe(x.shape[3], x.shape[2]), x_all, sec_all, tr_all, te_all, args.epochs,
            batch=32, y_eval=y_all),
        f"{name} ({longer} epochs: as many steps)": train(
            SecondProbe(x.shape[3], x.shape[2]), x, per_second, tr, te, longer, batch=32, y_eval=y),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--epochs", type=int, default=40, help="front-end probe epochs")
    ap.add_argument("--generated", type=int, default=0,
                    help="also train the per-second probe with this many generated videos added")
    ap.add_argument("--conf", type=Path, default=Path("conf"))
    ap.add_argument("--env", default=None, help="configuration environment of the run")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    meta = pd.read_parquet(args.data / "02_intermediate/scene_metadata.parquet")
    meta = meta.sort_values("video_id").reset_index(drop=True)
    ids = meta["video_id"].astype(str).tolist()
    feats = pd.read_parquet(args.data / "04_feature/audio_features.parquet")
    _, a = frame_to_tokens(feats, ids=ids)
    x = torch.from_numpy(a)  # [V, T, S, D]
    y = torch.zeros(len(ids), len(avqa.INSTRUMENTS))
    for i, sounding in enumerate(meta["sounding"]):
        for c in sounding:
            y[i, avqa.INSTRUMENTS.index(c)] = 1.0
    splits = meta["splits"].astype(str).str.split("+")  # the splits a video has questions in
    tr = torch.as_tensor(splits.apply(lambda s: "train" in s).to_numpy())
    te = torch.as_tensor(splits.apply(lambda s: "test" in s and "train" not in s).to_numpy())
    pooled = torch.cat([x.mean((1, 2)), x.std((1, 2))], 1)
    pooled = (pooled - pooled[tr].mean(0)) / (pooled[tr].std(0) + 1e-6)
    start = time.perf_counter()
    result = {
        "command": "python benchmarks/audio_probe.py " + " ".join(argv or sys.argv[1:]),
        "videos": {"train": int(tr.sum()), "test": int(te.sum())},
        "features": list(a.shape[1:]),
        "chance_recall_at_half": None,
        "probes": {
            "pooled mean|std, linear": train(torch.nn.Linear(pooled.shape[1], y.shape[1]),
                                             pooled, y, tr, te, 300),
            "pooled mean|std, MLP": train(torch.nn.Sequential(
                torch.nn.Linear(pooled.shape[1], 256), torch.nn.GELU(), torch.nn.Dropout(0.2),
                torch.nn.Linear(256, y.shape[1])), pooled, y, tr, te, 600),
        },
    }  # fmt: skip
    if a.shape[2] > 1:
        result["probes"][f"AudioFrontEnd ({args.epochs} epochs)"] = train(
            FrontEndProbe(a.shape[3], a.shape[2]), x, y, tr, te, args.epochs, batch=32
        )
        per_second = second_labels(args.data / "04_feature/grounding_labels.parquet", ids, a.shape[1])
        if per_second is not None:
            result["probes"][f"AudioFrontEnd + expert, per-second labels ({args.epochs} epochs)"] = train(
                SecondProbe(a.shape[3], a.shape[2]), x, per_second, tr, te, args.epochs, batch=32,
                y_eval=y,
            )  # fmt: skip
        if per_second is not None and args.generated:
            result["generated_videos"] = args.generated
            result["probes"].update(generated_probes(args, x, y, per_second, tr, te))
    result["labels_per_video"] = round(float(y.sum(1).mean()), 2)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "load_average": list(os.getloadavg())}  # fmt: skip
    del result["chance_recall_at_half"]
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
