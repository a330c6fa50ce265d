"""The README figure: frames of one generated video, its stems over time, and its questions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _pick_video(root: Path) -> tuple[dict, list[dict]]:
    from . import load_scenes

    records = []
    for split in ("train", "val", "test"):
        records += json.loads((root / f"avqa-{split}.json").read_text(encoding="utf-8"))
    best, best_key = None, None
    for scene in load_scenes(root):
        qs = [r for r in records if r["video_id"] == scene["video_id"]]
        insts = scene["instruments"]
        n_vis = sum(i["visible"] for i in insts)
        vis_snd = sum(i["visible"] and i["sounding"] for i in insts)
        silent = sum(i["visible"] and not i["sounding"] for i in insts)
        onsets = {i["onset"] for i in insts if i["sounding"]}
        av = sum(not r["type"].startswith('["Visual"') for r in qs)
        key = (n_vis == 3 and vis_snd >= 2 and silent >= 1, len(onsets) >= 2, av, len(qs))
        if best_key is None or key > best_key:
            best, best_key = (scene, qs), key
    return best


def make_example_figure(root: str | Path, out: str | Path, seed: int = 42) -> Path:
    """Generate a 60-video dataset in ``root`` and draw one video of it into ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from . import generate_dataset, render_stems

    root, out = Path(root), Path(out)
    generate_dataset({"root": str(root), "num_videos": 60}, seed)
    scene, questions = _pick_video(root)
    vid, seconds = scene["video_id"], int(scene["seconds"])
    shown = [0, seconds // 3, 2 * seconds // 3, seconds - 1]

    fig = plt.figure(figsize=(12, 6.6), dpi=110)
    grid = fig.add_gridspec(3, 4, height_ratios=[1.0, 0.6, 0.75], hspace=0.35, wspace=0.05)
    for j, k in enumerate(shown):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(Image.open(root / "frames" / vid / f"{k + 1:06d}.jpg"))
        ax.set_title(f"frame {k + 1:06d}.jpg (second {k})", fontsize=9)
        ax.axis("off")

    ax = fig.add_subplot(grid[1, :])
    stems = render_stems(scene)
    sr = int(scene["sample_rate"])
    hop = sr // 20
    colours = plt.get_cmap("tab10")
    for n, inst in enumerate(scene["instruments"]):
        if not inst["sounding"]:
            continue
        x = stems[inst["id"]]
        env = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))
        db = 20 * np.log10(np.maximum(env, 1e-5))
        where = inst["position"] or "off-screen"
        label = f"{inst['class']} ({where}, {inst['rhythm']}, {inst['loudness_db']:.0f} dB)"
        ax.plot(np.arange(len(db)) * hop / sr, db, lw=1.0, color=colours(n), label=label)
    ax.set_xlim(0, seconds)
    ax.set_ylim(-60, 0)
    ax.set_ylabel("stem RMS (dBFS)", fontsize=9)
    ax.set_xlabel("time (s)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7.5, loc="lower right", ncol=2, framealpha=0.8)
    vo = " + voiceover" if scene["voiceover"] else ""
    silent = [f"{i['class']} ({i['position']})" for i in scene["instruments"] if not i["sounding"]]
    vo += f"; silent: {', '.join(silent)}" if silent else ""
    ax.set_title(f"video {vid}: {scene['background']['kind']}{vo}; per-instrument stems before mixing",
                 fontsize=9)  # fmt: skip

    ax = fig.add_subplot(grid[2, :])
    ax.axis("off")
    lines = []
    for r in questions:
        text = r["question_content"]
        for value in json.loads(r["templ_values"]):
            start = text.index("<")
            text = text[:start] + value + text[text.index(">", start) + 1 :]
        kind = " / ".join(json.loads(r["type"]))
        lines.append(f"[{kind}]  {text}  ->  {r['anser']}")
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
