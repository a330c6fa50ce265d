"""Tensors for training and inference, built from the catalog tables; plus a synthetic generator.

:class:`AVQATensors` holds everything the model needs, indexed by *question* (one row of
``qa_pairs``): the video features of every split, the padded question features, the
retrievable memory-bank values and, per video, the indices of its retrieved neighbours in the
memory bank (``neighbors`` table, section 3.2 / eq. 1 is computed upstream by ``build_index``).

:func:`make_synthetic_tables` writes the upstream tables in the catalog's contract format with
answers that depend on the audio and visual features, for tests, benchmarks and scratch runs
before the real ``dataset``/``features``/``build_index`` outputs exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import avqa
from .splits import join_splits
from .tensors import frame_to_padded, frame_to_tokens, ragged_to_frame, tensor_to_frame

MODALITIES = ("audio", "visual")
#: ``neighbors.direction`` whose *values* are the given modality (the modality being recovered).
DIRECTION_FOR_MISSING = {"audio": "v2a", "visual": "a2v"}
#: integer codes of ``missing`` per sample, used by the model and the training loops.
MISSING_CODES = {"none": 0, "audio": 1, "visual": 2}
QA_COLUMNS = ("question_id", "video_id", "split", "question", "answer_idx")
NEIGHBOR_COLUMNS = ("query_video_id", "direction", "polarity", "rank", "neighbor_video_id")


@dataclass
class AVQATensors:
    """Everything the model reads, as CPU tensors. ``Q`` questions, ``V`` videos, ``T`` segments.

    Per question (rows of ``qa_pairs``, in table order): ``question_id [Q]``, ``split [Q]``,
    ``video [Q]`` (row in the video arrays), ``text [Q]`` (row in the question arrays),
    ``answer [Q]``. Per video: ``audio [V, T, S_a, Da]`` (log-mel frames per segment, or
    ``S_a = 1``), ``visual [V, T, S_v, Dv]`` (grid cells per segment), ``video_split [V]`` (the
    ``+``-joined splits it has questions in: ``train+test`` for a shared video). Per distinct
    question text: ``question [Nt, Lq, Dt]`` and ``question_mask [Nt, Lq]`` (True = real token).
    Memory bank (the retrievable values, eq. 4, stored as the experts consume them):
    ``bank[m] [Nb_m, T, S_m, D_m]``;
    ``neighbors[(m, polarity)] [V, R]``: for each video, the bank rows retrieved when modality
    ``m`` is missing, best first (``pos``) or least similar first (``neg``, the R- of eq. 14).
    """

    question_id: np.ndarray
    split: np.ndarray
    video: torch.Tensor
    text: torch.Tensor
    answer: torch.Tensor
    video_ids: list[str]
    video_split: np.ndarray
    audio: torch.Tensor
    visual: torch.Tensor
    question: torch.Tensor
    question_mask: torch.Tensor
    bank_ids: dict[str, list[str]] = field(default_factory=dict)
    bank: dict[str, torch.Tensor] = field(default_factory=dict)
    neighbors: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)

    # ---- sizes -----------------------------------------------------------------------------
    @property
    def dims(self) -> dict[str, int]:
        """Feature dimensions read from the data (never hard-coded)."""
        return {
            "d_audio": int(self.audio.shape[-1]),
            "d_visual": int(self.visual.shape[-1]),
            "d_text": int(self.question.shape[-1]),
            "s_audio": int(self.audio.shape[2]),
            "s_visual": int(self.visual.shape[2]),
        }

    @property
    def num_segments(self) -> int:
        return int(self.audio.shape[1])

    @property
    def has_retrieval(self) -> bool:
        return bool(self.neighbors)

    def features(self, modality: str) -> torch.Tensor:
        return self.audio if modality == "audio" else self.visual

    def indices(self, split: str) -> np.ndarray:
        """Question rows of ``split`` in table order (the order every result uses)."""
        idx = np.flatnonzero(self.split == split)
        if len(idx) == 0:
            raise ValueError(f"qa_pairs has no question in split {split!r}")
        return idx

    def video_mask_to_questions(self, video_mask: np.ndarray, split: str) -> np.ndarray:
        """A per-video boolean mask (aligned with ``video_ids``) -> per question of ``split``."""
        video_mask = np.asarray(video_mask, dtype=bool)
        if video_mask.shape != (len(self.video_ids),):
            raise ValueError(
                f"video mask has shape {video_mask.shape}, expected ({len(self.video_ids)},)"
            )
        return video_mask[self.video[self.indices(split)].numpy()]

    def videos_of(self, split: str) -> np.ndarray:
        """Rows of ``video_ids`` with at least one question in ``split`` (a video may have
        questions in several splits: official MUSIC-AVQA splits by question)."""
        return np.unique(self.video[np.flatnonzero(self.split == split)].numpy())

    def train_mean(self, modality: str) -> torch.Tensor:
        """``[T, S, D]`` mean features over training videos (the ``mean`` fill baseline)."""
        rows = self.videos_of("train")
        x = self.features(modality)
        return (x[rows] if len(rows) else x).mean(0)

    def fingerprint(self) -> str:
        """A hash of every array, so checkpoints are never resumed on different data."""
        h = hashlib.blake2b(digest_size=16)
        for arr in (self.question_id, self.split.astype(str)):
            h.update(np.ascontiguousarray(arr).tobytes())
        for t in (self.video, self.text, self.answer, self.audio, self.visual, self.question):
            h.update(t.numpy().tobytes())
        for key in sorted(self.neighbors):
            h.update(repr(key).encode())
            h.update(self.neighbors[key].numpy().tobytes())
        for m in sorted(self.bank):
            h.update(self.bank[m].numpy().tobytes())
        return h.hexdigest()


def _require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"catalog entry {name!r} lacks columns {missing}; it has {list(df.columns)}"
        )


def build_tensors(
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
    memory_bank_audio: pd.DataFrame | None = None,
    memory_bank_visual: pd.DataFrame | None = None,
    neighbors: pd.DataFrame | None = None,
    n_neighbors: int = 0,
) -> AVQATensors:
    """Catalog tables -> :class:`AVQATensors` (see the data contracts in the project brief).

    ``n_neighbors`` (the model's ``n``) is the least number of ranks the ``neighbors`` table must
    hold per (video, direction, polarity). Raises ``ValueError`` naming the table and the record
    on anything inconsistent, and when a video is retrieved as its own neighbour.
    """
    _require_columns(qa_pairs, QA_COLUMNS, "qa_pairs")
    qa = qa_pairs.reset_index(drop=True)
    if qa["question_id"].duplicated().any():
        dup = qa.loc[qa["question_id"].duplicated(), "question_id"].iloc[0]
        raise ValueError(f"qa_pairs: question_id {dup} appears more than once")
    answer = qa["answer_idx"].to_numpy(np.int64)
    bad = (answer < 0) | (answer >= len(avqa.ANSWERS))
    if bad.any():
        raise ValueError(
            f"qa_pairs: answer_idx {answer[bad][0]} of question_id "
            f"{qa['question_id'].to_numpy()[bad][0]} is outside avqa.ANSWERS (0..{len(avqa.ANSWERS) - 1})"
        )
    video_ids = sorted(set(qa["video_id"].astype(str)))
    tensors = {}
    for name, df in (("audio_features", audio_features), ("visual_features", visual_features)):
        _require_columns(df, ("video_id", "t", "feature"), name)
        try:
            _, x = frame_to_tokens(df, "video_id", ids=video_ids)  # [V, T, S, D]
        except KeyError as exc:
            raise ValueError(f"{name}: {exc.args[0]} (videos of qa_pairs)") from exc
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
        tensors[name] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    audio, visual = tensors["audio_features"], tensors["visual_features"]
    if audio.shape[1] != visual.shape[1]:
        raise ValueError(
            f"audio_features has T={audio.shape[1]} segments but visual_features T={visual.shape[1]}"
        )
    _require_columns(question_features, ("question", "t", "feature"), "question_features")
    texts = sorted(set(qa["question"].astype(str)))
    try:
        _, q, q_mask = frame_to_padded(question_features, "question", ids=texts)
    except KeyError as exc:
        raise ValueError(f"question_features: {exc.args[0]} (questions of qa_pairs)") from exc
    if (q_mask.sum(1) == 0).any():
        raise ValueError("question_features: a question has no token")

    vpos = {v: i for i, v in enumerate(video_ids)}
    tpos = {t: i for i, t in enumerate(texts)}
    # per video: the splits it has questions in, "+"-joined ("train+test": shared videos)
    video_split = np.array(
        [
            join_splits(s)
            for s in qa.groupby(qa["video_id"].astype(str))["split"]
            .agg(lambda x: set(x.astype(str)))
            .reindex(video_ids)
        ],
        dtype=object,
    )
    out = AVQATensors(
        question_id=qa["question_id"].to_numpy(np.int64),
        split=qa["split"].astype(str).to_numpy(),
        video=torch.tensor(qa["video_id"].astype(str).map(vpos).to_numpy(np.int64)),
        text=torch.tensor(qa["question"].astype(str).map(tpos).to_numpy(np.int64)),
        answer=torch.tensor(answer),
        video_ids=video_ids,
        video_split=video_split.astype(str),
        audio=audio,
        visual=visual,
        question=torch.from_numpy(q),
        question_mask=torch.from_numpy(q_mask),
    )
    if neighbors is not None:
        banks = {"audio": memory_bank_audio, "visual": memory_bank_visual}
        for m, df in banks.items():
            name = f"memory_bank_{m}"
            if df is None:
                raise ValueError(f"{name} is required when neighbors are given")
            _require_columns(df, ("video_id", "t", "feature"), name)
            ids, x = frame_to_tokens(df, "video_id")
            if x.shape[1:] != out.features(m).shape[1:]:
                raise ValueError(
                    f"{name} rows are [T, S, D] = {list(x.shape[1:])} but {m}_features are "
                    f"{list(out.features(m).shape[1:])}"
                )
            out.bank_ids[m] = ids
            out.bank[m] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        out.neighbors = _neighbor_table(neighbors, video_ids, out.bank_ids, n_neighbors)
    return out


def _neighbor_table(
    neighbors: pd.DataFrame, video_ids: list[str], bank_ids: dict[str, list[str]], n: int
) -> dict[tuple[str, str], torch.Tensor]:
    """``neighbors`` rows -> ``{(missing modality, polarity): bank rows [V, R]}``, rank order."""
    _require_columns(neighbors, NEIGHBOR_COLUMNS, "neighbors")
    nb = neighbors.loc[:, list(NEIGHBOR_COLUMNS)].copy()
    nb["query_video_id"] = nb["query_video_id"].astype(str)
    nb["neighbor_video_id"] = nb["neighbor_video_id"].astype(str)
    own = nb["query_video_id"] == nb["neighbor_video_id"]
    if own.any():
        row = nb[own].iloc[0]
        raise ValueError(
            f"neighbors: video {row.query_video_id} retrieves itself ({row.direction}, "
            f"{row.polarity}, rank {row['rank']}); a sample must never see its own video"
        )
    out: dict[tuple[str, str], torch.Tensor] = {}
    wanted = set(video_ids)
    for m, direction in DIRECTION_FOR_MISSING.items():
        bpos = {v: i for i, v in enumerate(bank_ids[m])}
        for polarity in ("pos", "neg"):
            sel = nb[(nb["direction"] == direction) & (nb["polarity"] == polarity)]
            sel = sel[sel["query_video_id"].isin(wanted)].sort_values(
                ["query_video_id", "rank"], kind="stable"
            )
            counts = sel.groupby("query_video_id").size()
            lacking = sorted(wanted - set(counts.index))
            if lacking:
                raise ValueError(
                    f"neighbors: no ({direction}, {polarity}) rows for video {lacking[0]} "
                    f"({len(lacking)} videos lack them)"
                )
            r = int(counts.min())
            if r < max(n, 1):
                raise ValueError(
                    f"neighbors: video {counts.idxmin()} has {r} ({direction}, {polarity}) "
                    f"neighbours but model.n_retrieve = {n}; lower it or rebuild the index deeper"
                )
            unknown = ~sel["neighbor_video_id"].isin(bpos)
            if unknown.any():
                raise ValueError(
                    f"neighbors: neighbour {sel.loc[unknown, 'neighbor_video_id'].iloc[0]} is not "
                    f"in memory_bank_{m}"
                )
            sel = sel.groupby("query_video_id", sort=True).head(r)
            rows = np.array(sel["neighbor_video_id"].map(bpos), dtype=np.int64).reshape(-1, r)
            # rows follow the sorted query ids, i.e. ``video_ids`` (sorted, all present)
            out[(m, polarity)] = torch.from_numpy(rows)
    return out


def train_missing_masks(
    tensors: AVQATensors, rate: float, modality: str, seed: int
) -> dict[str, np.ndarray]:
    """Training-time missingness (the paper's stated limitation, section 7).

    A fraction ``rate`` of the *training* videos truly lacks one modality (``modality`` =
    ``audio``, ``visual`` or ``both``: each affected video then loses one of the two at random).
    Returns ``{"audio": bool[V], "visual": bool[V]}`` aligned with ``tensors.video_ids``.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"train_missing.rate must be in [0, 1], got {rate}")
    if modality not in ("audio", "visual", "both"):
        raise ValueError(f"train_missing.modality must be audio, visual or both, got {modality!r}")
    masks = {m: np.zeros(len(tensors.video_ids), bool) for m in MODALITIES}
    train = tensors.videos_of("train")
    rng = np.random.default_rng([seed, 7919])
    hit = train[rng.random(len(train)) < rate]
    which = rng.integers(0, 2, len(hit)) if modality == "both" else None
    for i, v in enumerate(hit):
        m = modality if which is None else MODALITIES[which[i]]
        masks[m][v] = True
    return masks


def exclude_missing_from_bank(tensors: AVQATensors, masks: dict[str, np.ndarray]) -> AVQATensors:
    """Drop bank entries whose modality is missing at training time from every neighbour list.

    A memory-bank video that is also a training video without, e.g., audio has no audio to give
    (the corpus is the training split by default). Each list keeps its order and length: the
    surviving neighbours are cycled into the freed slots (eq. 4 then averages fewer distinct
    candidates). A video left with no neighbour at all is an error.
    """
    if not tensors.has_retrieval or not any(m.any() for m in masks.values()):
        return tensors
    vpos = {v: i for i, v in enumerate(tensors.video_ids)}
    new = dict(tensors.neighbors)
    for m in MODALITIES:
        gone = np.array([b in vpos and masks[m][vpos[b]] for b in tensors.bank_ids[m]], bool)
        if not gone.any():
            continue
        for pol in ("pos", "neg"):
            table = tensors.neighbors[(m, pol)].numpy()
            keep = ~gone[table]  # [V, R]
            if (keep.sum(1) == 0).any():
                v = tensors.video_ids[int(np.flatnonzero(keep.sum(1) == 0)[0])]
                raise ValueError(
                    f"video {v}: every {pol} {m} neighbour is a training video whose {m} is "
                    "missing (train_missing); lower train_missing.rate or rebuild the index deeper"
                )
            rows = np.stack(
                [np.resize(row[k], len(row)) for row, k in zip(table, keep, strict=True)]
            )
            new[(m, pol)] = torch.from_numpy(rows)
    return dataclasses.replace(tensors, neighbors=new)


# ---- synthetic tables ------------------------------------------------------------------------
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
