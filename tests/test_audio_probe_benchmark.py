"""``benchmarks/audio_probe.py --generated N``: the per-second probe with generated videos
added to its training set, against as many steps on the training videos alone."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
from kedro.config import OmegaConfigLoader

from r2scp_pipeline import avqa
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("audio_probe", ROOT / "benchmarks/audio_probe.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_generated_videos_join_the_training_set_and_the_control_gets_as_many_steps(monkeypatch):
    feats = OmegaConfigLoader(str(ROOT / "conf"), env="test", **CONFIG_LOADER_ARGS)["parameters"]["features"]
    t, s, d = int(feats["segments"]), feats["audio"]["logmel"]["frames_per_segment"], feats["audio"]["logmel"]["n_mels"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, t, s, d, generator=g)
    per_second = (torch.rand(8, t, len(avqa.INSTRUMENTS), generator=g) > 0.9).float()
    tr = torch.tensor([True] * 6 + [False] * 2)
    seen = []
    real_train = bench.train

    def spy(net, x_, y_, tr_, te_, epochs, batch=None, y_eval=None):
        seen.append((len(x_), int(tr_.sum()), int(te_.sum()), epochs))
        return real_train(net, x_, y_, tr_, te_, epochs, batch, y_eval)

    monkeypatch.setattr(bench, "train", spy)
    args = argparse.Namespace(generated=3, conf=ROOT / "conf", env="test", epochs=1)
    out = bench.generated_probes(args, x, per_second.amax(1), per_second, tr, ~tr)
    names = list(out)
    assert "+ 3 generated videos (1 epochs)" in names[0] and "(2 epochs: as many steps)" in names[1]
    # 8 dataset + 3 generated videos, 6 + 3 train, the same 2 test videos; control: 6 train x 2
    assert seen == [(11, 9, 2, 1), (8, 6, 2, 2)]
    assert all(set(r) == {"exact_set", "recall", "precision"} for r in out.values())
