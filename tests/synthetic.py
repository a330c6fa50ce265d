"""Synthetic upstream tables for tests and benchmarks (moved out of ``r2scp_pipeline.data``).

:func:`make_synthetic_tables` writes the tables ``data.build_tensors`` reads, in the catalog's
contract format, with answers that depend on the audio and visual features: for tests,
benchmarks and scratch runs before the real ``dataset``/``features``/``build_index`` outputs
exist. Tests import it as ``from tests.synthetic import make_synthetic_tables``; the scripts in
``benchmarks/`` put the repository root on ``sys.path`` first (see ``benchmarks/training.py``).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from r2scp_pipeline import avqa
from r2scp_pipeline.tensors import ragged_to_frame, tensor_to_frame

_SYN_TEMPLATES = (
    ("Audio", "Counting", "Is there a <Object> sound?"),
    ("Audio", "Counting", "How many musical instruments were heard throughout the video?"),
    ("Visual", "Counting", "Is there a <Object> in the entire video?"),
    ("Visual", "Counting", "How many types of musical instruments appeared in the entire video?"),
    ("Visual", "Location", "What kind of musical instrument is it?"),
    ("Audio-Visual", "Existential", "Is this sound from the instrument in the video?"),
    ("Audio-Visual", "Counting", "How many instruments are sounding in the video?"),
)
_COUNTS = ("zero", "one", "two", "three", "four")


def _word_vector(word: str, dim: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    return rng.standard_normal(dim).astype(np.float32)


def make_synthetic_tables(
    n_videos: int = 60,
    questions_per_video: tuple[int, int] = (5, 8),
    segments: int = 10,
    d_audio: int = 16,
    d_visual: int = 24,
    d_text: int = 12,
    n_instruments: int = 8,
    neighbor_ranks: int = 5,
    noise: float = 0.3,
    seed: int = 0,
    audio_tokens: int = 1,
    visual_tokens: int = 1,
) -> dict[str, pd.DataFrame]:
    """Upstream tables in the catalog contract format, with answers grounded in the features.

    Each video has 1-3 instruments, each visible and/or sounding. Audio segments are sums of
    the sounding instruments' audio prototypes (randomly active per segment), visual segments
    sums of the visible instruments' visual prototypes, plus noise; questions ask what is
    heard / seen / how many, so audio-only questions need the audio and so on. The memory bank
    is the training videos; ``neighbors`` ranks bank videos by cosine similarity between noisy
    instrument multi-hots of the query modality and of the bank's value modality (a stand-in
    for the unified embedding space), excluding the query's own video.
    ``audio_tokens`` / ``visual_tokens`` > 1 write several tokens per segment (``s`` column):
    audio frames, each instrument active per frame; visual cells, each visible instrument in
    one cell of the grid.
    Returns ``qa_pairs, audio_features, visual_features, question_features,
    memory_bank_audio, memory_bank_visual, neighbors``.
    """
    rng = np.random.default_rng(seed)
    names = list(avqa.INSTRUMENTS[:n_instruments])
    proto_a = rng.standard_normal((n_instruments, d_audio)).astype(np.float32)
    proto_v = rng.standard_normal((n_instruments, d_visual)).astype(np.float32)
    vids = [f"syn{i:05d}" for i in range(n_videos)]
    perm = rng.permutation(n_videos)
    n_tr, n_va = max(1, int(0.7 * n_videos)), max(1, int(0.1 * n_videos))
    split = np.empty(n_videos, dtype=object)
    split[perm[:n_tr]], split[perm[n_tr : n_tr + n_va]], split[perm[n_tr + n_va :]] = (
        "train", "val", "test",
    )  # fmt: skip
    audio = np.zeros((n_videos, segments, audio_tokens, d_audio), np.float32)
    visual = np.zeros((n_videos, segments, visual_tokens, d_visual), np.float32)
    seen_hot = np.zeros((n_videos, n_instruments), np.float32)
    heard_hot = np.zeros((n_videos, n_instruments), np.float32)
    rows, qid = [], 0
    for v in range(n_videos):
        k = int(rng.integers(1, 4))
        inst = rng.choice(n_instruments, size=k, replace=False)
        seen = [i for i in inst if rng.random() < 0.85] or [int(inst[0])]
        heard = [i for i in inst if rng.random() < 0.75] or [int(inst[-1])]
        seen_hot[v, seen], heard_hot[v, heard] = 1.0, 1.0
        for i in heard:
            active = (rng.random((segments, audio_tokens)) < 0.8).astype(np.float32)[..., None]
            audio[v] += active * proto_a[i]
        for i in seen:
            cell = int(rng.integers(visual_tokens)) if visual_tokens > 1 else 0
            visual[v, :, cell] += proto_v[i]
        audio[v] += noise * rng.standard_normal((segments, audio_tokens, d_audio))
        visual[v] += noise * rng.standard_normal((segments, visual_tokens, d_visual))
        nq = int(rng.integers(questions_per_video[0], questions_per_video[1] + 1))
        for _ in range(nq):
            modality, subtype, template = _SYN_TEMPLATES[int(rng.integers(len(_SYN_TEMPLATES)))]
            obj = ""
            if "<Object>" in template:
                pool = heard if "sound" in template else seen
                obj = (
                    names[int(rng.choice(pool))]
                    if rng.random() < 0.5
                    else names[int(rng.integers(n_instruments))]
                )
            question = template.replace("<Object>", obj.replace("_", " "))
            if template.startswith("Is there a <Object> sound"):
                answer = "yes" if names.index(obj) in heard else "no"
            elif template.startswith("Is there a <Object> in"):
                answer = "yes" if names.index(obj) in seen else "no"
            elif "heard" in template or "sounding" in template:
                answer = _COUNTS[len(heard)]
            elif "appeared" in template:
                answer = _COUNTS[len(seen)]
            elif template.startswith("What kind"):
                answer = names[int(seen[0])]
            else:
                answer = "yes" if set(heard) <= set(seen) else "no"
            rows.append(
                {
                    "question_id": qid, "video_id": vids[v], "split": split[v],
                    "question": question, "template": template,
                    "templ_values": f'["{obj}"]' if obj else "[]",
                    "modality": modality, "subtype": subtype, "answer": answer,
                    "answer_idx": avqa.ANSWER_TO_IDX[answer],
                }
            )  # fmt: skip
            qid += 1
    qa = pd.DataFrame(rows).astype({"question_id": "int64", "answer_idx": "int64"})
    texts = sorted(set(qa["question"]))
    qfeat = [
        np.stack([_word_vector(w.lower(), d_text) for w in t.rstrip("?").split()]) for t in texts
    ]
    bank = [i for i in range(n_videos) if split[i] == "train"]
    bank_ids = [vids[i] for i in bank]
    nb_rows = []
    for direction, q_hot, k_hot in (("v2a", seen_hot, heard_hot), ("a2v", heard_hot, seen_hot)):
        qe = q_hot + 0.3 * rng.standard_normal(q_hot.shape)
        ke = k_hot[bank] + 0.3 * rng.standard_normal((len(bank), n_instruments))
        qe /= np.linalg.norm(qe, axis=1, keepdims=True) + 1e-8
        ke /= np.linalg.norm(ke, axis=1, keepdims=True) + 1e-8
        sims = qe @ ke.T
        for v in range(n_videos):
            order = [j for j in np.argsort(-sims[v], kind="stable") if bank[j] != v]
            for pol, lst in (
                ("pos", order[:neighbor_ranks]),
                ("neg", order[::-1][:neighbor_ranks]),
            ):
                for r, j in enumerate(lst):
                    nb_rows.append((vids[v], direction, pol, r, bank_ids[j], float(sims[v, j])))
    neighbors = pd.DataFrame(
        nb_rows,
        columns=["query_video_id", "direction", "polarity", "rank", "neighbor_video_id", "score"],
    ).astype({"rank": "int64", "score": "float32"})
    if audio_tokens == 1:  # one token per segment: the plain [V, T, D] layout (no s column)
        audio = audio[:, :, 0]
    if visual_tokens == 1:
        visual = visual[:, :, 0]
    return {
        "qa_pairs": qa,
        "audio_features": tensor_to_frame(vids, audio),
        "visual_features": tensor_to_frame(vids, visual),
        "question_features": ragged_to_frame(texts, qfeat),
        "memory_bank_audio": tensor_to_frame(bank_ids, audio[bank]),
        "memory_bank_visual": tensor_to_frame(bank_ids, visual[bank]),
        "neighbors": neighbors,
    }


def as_multiple_choice(tables: dict[str, pd.DataFrame], seed: int = 0) -> dict[str, pd.DataFrame]:
    """The same tables as multiple-choice (AVQA-style) data: ``qa_pairs`` gains ``choices``
    (the answer and three distractors of its family, ``generator/choices.py``) and
    ``choice_idx``; ``question_features`` gains the candidate texts (word vectors)."""
    from r2scp_pipeline.pipelines.dataset.generator.choices import candidates

    rng = np.random.default_rng([seed, 11])
    qa = tables["qa_pairs"].copy()
    picked = [candidates(a, rng) for a in qa["answer"]]
    qa["choices"] = pd.Series([c for c, _ in picked], dtype=object)
    qa["choice_idx"] = pd.Series([i for _, i in picked], dtype="int64")
    dim = len(tables["question_features"]["feature"].iloc[0])
    texts = sorted({c for cs in qa["choices"] for c in cs} - set(qa["question"]))
    feats = [np.stack([_word_vector(w, dim) for w in t.split()]) for t in texts]
    question_features = pd.concat(
        [tables["question_features"], ragged_to_frame(texts, feats)], ignore_index=True
    )
    return {**tables, "qa_pairs": qa, "question_features": question_features}
