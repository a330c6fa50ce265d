"""Project commands: ``kedro predict`` (= ``r2scp-pipeline predict``) answers one question about
one video with the trained model. Everything else is Kedro's: ``r2scp-pipeline [options]`` is
``kedro run [options]`` (``run`` below is Kedro's own command, re-exported because Kedro looks
for it here once a project ``cli.py`` exists).

Kedro imports this module on every ``kedro`` call: heavy imports (torch, the encoders) happen
inside the command only.

A known video (``--video-id``) reads its features from ``audio_features`` /
``visual_features`` and its neighbours from ``neighbors``; a new one (``--video PATH.mp4``) is
decoded and encoded by the ``features`` pipeline's functions with the project's parameters, its
keys are embedded by the trained ``joint_space`` heads and its neighbours searched in
``audio_index`` / ``visual_index`` (nothing excluded: it is not in the corpus). Only the rows
of the one video and of its neighbours are read from the big feature tables.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run  # noqa: F401  (find_run_command looks for it here)

from .vocabulary import DIRECTION_FOR_MISSING, DIRECTIONS, MODALITIES

NEW_VIDEO_SPLIT = "new"


class PredictError(click.ClickException):
    """A one-line error (``Error: ...`` on stderr, exit status 1) naming the culprit."""


@click.group(name="r2scp-pipeline")
def cli() -> None:
    """Project commands of r2scp-pipeline."""


@cli.command()
@click.option(
    "--video-id", help="a video of the project (its features and neighbours come from the catalog)"
)
@click.option("--video", "video_path", type=click.Path(dir_okay=False, path_type=Path),
              help="a new .mp4: features, keys and neighbours are computed now")  # fmt: skip
@click.option("--question", "-q", required=True, help="the question, in English")
@click.option("--missing", type=click.Choice(MODALITIES),
              help="drop this modality and recover it by retrieval + purification (CMR + CAP)")  # fmt: skip
@click.option("--env", "-e", default=None, help="Kedro configuration environment (e.g. test)")
@click.option(
    "--n",
    "n_retrieve",
    type=int,
    default=None,
    help="neighbours averaged (n of eq. 4); default the model's",
)
@click.option(
    "--k", "k_purge", type=int, default=None, help="tokens purified by CAP (k); default the model's"
)
@click.option(
    "--method", default="r2scp", show_default=True,
    help="a trained variant (evaluate.methods: r2scp, zero_fill, oracle, ...): its model for "
         "params:seed and its recovery of the missing modality",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of text")
def predict(video_id, video_path, question, missing, env, n_retrieve, k_purge, method,
            as_json) -> None:  # fmt: skip
    """Answer a question about one video: the answer, the top 5 with probabilities, the router
    weights over audio / visual / text and the retrieved neighbour videos."""
    if (video_id is None) == (video_path is None):
        raise PredictError("give exactly one of --video-id ID (a known video) or --video PATH.mp4")
    if not question.strip():
        raise PredictError(
            '--question is empty: ask something, e.g. --question "Is there a violin sound?"'
        )
    if n_retrieve is not None and n_retrieve < 1:
        raise PredictError(f"--n must be >= 1, got {n_retrieve}")
    if k_purge is not None and k_purge < 0:
        raise PredictError(f"--k must be >= 0, got {k_purge}")
    from kedro.io.core import DatasetError

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    try:
        # Kedro's rich logs go to stdout: send them to stderr, so stdout holds only the result
        with contextlib.redirect_stdout(sys.stderr):
            answer = _predict(video_id, video_path, question.strip(), missing or "none", env,
                              n_retrieve, k_purge, method)  # fmt: skip
    except PredictError:
        raise
    except (ValueError, RuntimeError, DatasetError) as exc:  # MediaError is a RuntimeError
        raise PredictError(" ".join(str(exc).split())) from exc
    if as_json:
        click.echo(json.dumps(answer.to_dict()))
    else:
        click.echo(format_answer(answer))


def format_answer(answer: Any) -> str:
    """The human-readable report of an :class:`~r2scp_pipeline.inference.Answer`."""
    lines = [
        f"video:    {answer.video_id}",
        f"question: {answer.question}",
        f"missing:  {answer.missing}",
        f"answer:   {answer.answer}",
        "top 5:",
        *(f"  {p:6.1%}  {a}" for a, p in answer.top),
        "router (alpha): " + ", ".join(f"{m} {w:.3f}" for m, w in answer.alpha.items()),
    ]
    if answer.neighbors:
        lines.append(f"retrieved neighbours (n = {answer.n_retrieve}):")
        lines += [f"  {m}: {', '.join(ids)}" for m, ids in answer.neighbors.items()]
    else:
        lines.append("retrieved neighbours: none used by this model")
    return "\n".join(lines)


# ---- the work --------------------------------------------------------------------------------
def _predict(video_id, video_path, question, missing, env, n_retrieve, k_purge, method="r2scp"):
    import pandas as pd
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.utils import find_kedro_project

    from .data import build_tensors
    from .inference import predict_one
    from .params import validate_parameters
    from .training import load_model

    root = find_kedro_project(Path.cwd())
    if root is None:
        raise PredictError(f"{Path.cwd()} is not inside a Kedro project: run from the project root")
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env) as session:
        context = session.load_context()
        catalog, params = context.catalog, context.params
        validate_parameters(params)  # as `kedro run` does (hooks.EarlyChecks)
        model, recovery = _load_model(catalog, load_model, k_purge, method, int(params["seed"]))
        n = model.cfg.n_retrieve if n_retrieve is None else n_retrieve
        if video_path is not None:
            vid, audio, visual, neighbors = _new_video(catalog, params, Path(video_path), n)
        else:
            vid, audio, visual, neighbors = _known_video(context, str(video_id))
        qa = pd.DataFrame({"question_id": [0], "video_id": [vid], "split": ["predict"],
                           "question": [question], "answer_idx": [0]})  # fmt: skip
        questions = _encode_question(qa, params)
        ids = {m: sorted(set(neighbors.loc[neighbors["direction"] == d, "neighbor_video_id"]))
               for m, d in DIRECTION_FOR_MISSING.items()}  # fmt: skip
        banks = {m: _load_rows(context, f"memory_bank_{m}", ids[m]) for m in MODALITIES}
        tensors = build_tensors(qa, audio, visual, questions, banks["audio"], banks["visual"],
                                neighbors, n_neighbors=n)  # fmt: skip
        return predict_one(model, tensors, 0, missing, n, question=question, recovery=recovery)


def _load_model(catalog, load_model, k_purge, method: str = "r2scp", seed: int = 0):
    """The model of ``method`` (``r2scp``: ``r2scp_model``; else the variant's model for
    ``seed``) and its recovery (a ``recovery.Recovery``)."""
    from kedro.io.core import DatasetError

    from .recovery import REGISTRY
    from .recovery import build as build_recovery
    from .variants import recovery_for, seed_key

    overrides = {} if k_purge is None else {"k_purge": k_purge}
    if method == "r2scp":
        try:
            checkpoint = catalog.load("r2scp_model")
        except DatasetError as exc:
            raise PredictError(
                "r2scp_model not found (data/06_models/r2scp_model.pt): train it first with "
                "`kedro run --pipelines=train`"
            ) from exc
        return load_model(checkpoint, device="cpu", **overrides), build_recovery("r2scp", seed)
    rerun = f"`kedro run --pipelines=variants --namespaces={method}`"
    try:
        art = catalog.load(f"{method}.variant_models")
    except DatasetError as exc:
        raise PredictError(f"no trained variant {method!r}: train it with {rerun}") from exc
    checkpoint = art.get("models", {}).get(seed_key(seed))
    if checkpoint is None:
        raise PredictError(f"variant {method!r} has no model for seed {seed}: run {rerun}")
    name = art["recovery"]
    imputers = catalog.load("generative_imputers") if REGISTRY[name].needs_imputer else None
    return load_model(checkpoint, device="cpu", **overrides), recovery_for(name, seed, imputers)


def _load_rows(context, name: str, ids: list[str]):
    """The rows of catalog entry ``name`` whose ``video_id`` is in ``ids``. A parquet entry is
    read with a pyarrow filter (the feature tables hold every video); others load whole."""
    from kedro.io import AbstractDataset

    cfg = dict(context.config_loader["catalog"].get(name) or {})
    if str(cfg.get("type", "")).endswith("ParquetDataset") and "filepath" in cfg:
        path = Path(cfg["filepath"])
        cfg["filepath"] = str(path if path.is_absolute() else context.project_path / path)
        if not Path(cfg["filepath"]).exists():
            raise PredictError(
                f"{name} ({cfg['filepath']}) does not exist: run the pipeline that writes it"
            )
        cfg["load_args"] = {**cfg.get("load_args", {}), "filters": [("video_id", "in", list(ids))]}
        df = AbstractDataset.from_config(name, cfg).load()
    else:
        df = context.catalog.load(name)
        df = df[df["video_id"].astype(str).isin(set(ids))]
    return df.reset_index(drop=True)


def _known_video(context, video_id: str):
    audio = _load_rows(context, "audio_features", [video_id])
    visual = _load_rows(context, "visual_features", [video_id])
    if len(audio) == 0 or len(visual) == 0:
        qa = context.catalog.load("qa_pairs")
        known = sorted(set(qa["video_id"].astype(str)))
        raise PredictError(
            f"unknown video id {video_id!r}: it has no rows in audio_features / visual_features "
            f"(the project knows {len(known)} videos, e.g. {', '.join(known[:3])}); "
            "give one of them, or --video PATH.mp4 for a new video"
        )
    neighbors = context.catalog.load("neighbors")
    neighbors = neighbors[neighbors["query_video_id"].astype(str) == video_id]
    if len(neighbors) == 0:
        raise PredictError(
            f"video {video_id!r} has no rows in neighbors: re-run `kedro run --pipelines=build_index`"
        )
    return video_id, audio, visual, neighbors.reset_index(drop=True)


def _new_video(catalog, params, path: Path, n: int):
    """Features of a new mp4 with the ``features`` pipeline's own functions and parameters,
    its unified-space keys, and its top-n / bottom-n neighbours from the FAISS indices."""
    import pandas as pd

    from .media import extract_audio_features, extract_visual_features
    from .pipelines.build_index.index import corpus_keys, search_excluding
    from .pipelines.build_index.joint_space import embed, load_joint_space, pool_tokens
    from .tensors import frame_to_tokens

    path = path.resolve()
    vid = f"new:{path.name}"  # never a corpus id: nothing is excluded from the search
    if path.suffix.lower() != ".mp4":
        raise PredictError(f"{path}: --video takes an .mp4 file")
    if not path.is_file():
        raise PredictError(f"{path}: no such file (--video)")
    fparams = {**params["features"], "source": "mp4", "on_error": "raise", "progress": False,
               "media_root": None}  # fmt: skip
    index = pd.DataFrame({"video_id": [vid], "split": [NEW_VIDEO_SPLIT], "video_path": [str(path)]})
    audio, _ = extract_audio_features(index, fparams)
    visual, _ = extract_visual_features(index, fparams)
    space = load_joint_space(catalog.load("joint_space"))
    query = {m: embed(getattr(space, m), pool_tokens(frame_to_tokens(f)[1]))
             for m, f in (("audio", audio), ("visual", visual))}  # fmt: skip
    embeddings = catalog.load("unified_embeddings")
    indices = {"audio": catalog.load("audio_index"), "visual": catalog.load("visual_index")}
    threads = params.get("build_index", {}).get("index", {}).get("threads")
    rows = []
    for direction, (q_mod, k_mod) in DIRECTIONS.items():
        ids, keys = corpus_keys(embeddings, k_mod)
        if ids != indices[k_mod].ids:
            raise PredictError(
                f"{k_mod}_index and unified_embeddings come from different runs: re-run "
                "`kedro run --pipelines=build_index`"
            )
        for polarity, lowest in (("pos", False), ("neg", True)):
            hit, score = search_excluding(indices[k_mod], keys, query[q_mod], [vid], n,
                                          lowest=lowest, threads=threads)  # fmt: skip
            rows += [(vid, direction, polarity, r, ids[int(i)], float(s))
                     for r, (i, s) in enumerate(zip(hit[0], score[0], strict=True))]  # fmt: skip
    columns = ["query_video_id", "direction", "polarity", "rank", "neighbor_video_id", "score"]
    return vid, audio, visual, pd.DataFrame(rows, columns=columns)


def _encode_question(qa, params):
    from .pipelines.features.nodes import extract_question_features

    frame, _ = extract_question_features(qa, params["features"])
    return frame
