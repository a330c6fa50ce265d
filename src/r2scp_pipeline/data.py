"""Tensors for training and inference, built from the catalog tables.

:class:`AVQATensors` holds everything the model needs, indexed by *question* (one row of
``qa_pairs``): the video features of every split, the padded question features, the
retrievable memory-bank values and, per video, the indices of its retrieved neighbours in the
memory bank (``neighbors`` table, section 3.2 / eq. 1 is computed upstream by ``build_index``).

Synthetic tables in the same contract format, for tests and benchmarks, are made by
``tests/synthetic.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import avqa
from .grounding import ATTRIBUTES, tag_target
from .splits import join_splits
from .tensors import frame_to_padded, frame_to_tokens
from .vocabulary import DIRECTION_FOR_MISSING, MODALITIES

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
    Multiple-choice data (``qa_pairs.choices``, AVQA): ``choices [Q, C]`` rows of each question's
    candidates in ``choice_tokens [Nc, Lc, Dt]`` / ``choice_mask [Nc, Lc]`` (distinct candidate
    texts), and ``answer`` is the right candidate's index (``choice_idx``); otherwise all three
    are None and ``answer`` indexes ``avqa.ANSWERS``.
    Grounding labels (``grounding_labels``, stage I only): ``grounding[m]`` float multi-hot over
    ``avqa.INSTRUMENTS``, audio ``[V, T, 1, K]`` (what sounds in each segment; ``[V, T, 1, 3K]``
    with how loud and rhythmic, :mod:`r2scp_pipeline.grounding`), visual
    ``[V, T, S_v, K]`` (what is seen in each cell); ``grounding_known [V]`` marks the videos
    that have labels. Empty when the source has none (real MUSIC-AVQA, AVQA).
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
    choices: torch.Tensor | None = None
    choice_tokens: torch.Tensor | None = None
    choice_mask: torch.Tensor | None = None
    grounding: dict[str, torch.Tensor] = field(default_factory=dict)
    grounding_known: torch.Tensor | None = None

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
    def n_choices(self) -> int:
        """Candidates per question (0: open-ended data, answers from ``avqa.ANSWERS``)."""
        return 0 if self.choices is None else int(self.choices.shape[1])

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
        if self.choices is not None:
            for t in (self.choices, self.choice_tokens):
                h.update(t.numpy().tobytes())
        for m in sorted(self.grounding):
            h.update(self.grounding[m].numpy().tobytes())
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
    grounding_labels: pd.DataFrame | None = None,
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
    choice_lists = None
    if "choices" in qa.columns:  # multiple choice: the answer is the right candidate's index
        _require_columns(qa, ("choice_idx",), "qa_pairs")
        choice_lists = [[str(c) for c in cs] for cs in qa["choices"]]
        widths = sorted({len(c) for c in choice_lists})
        if len(widths) != 1 or widths[0] < 2:
            raise ValueError(f"qa_pairs: questions have {widths} candidate answers; expected one "
                             "number (>= 2) for every question")  # fmt: skip
        answer, n_classes, what = qa["choice_idx"].to_numpy(np.int64), widths[0], "choice_idx"
    else:
        answer, n_classes, what = qa["answer_idx"].to_numpy(np.int64), len(avqa.ANSWERS), "answer_idx"
    bad = (answer < 0) | (answer >= n_classes)
    if bad.any():
        raise ValueError(
            f"qa_pairs: {what} {answer[bad][0]} of question_id "
            f"{qa['question_id'].to_numpy()[bad][0]} is outside 0..{n_classes - 1}"
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
    choice_rows = choice_x = choice_m = None
    if choice_lists is not None:
        ctexts = sorted({c for cs in choice_lists for c in cs})
        try:
            _, cx, cm = frame_to_padded(question_features, "question", ids=ctexts)
        except KeyError as exc:
            raise ValueError(f"question_features: {exc.args[0]} (candidate answers of qa_pairs)") from exc
        q, q_mask = _trim(q, q_mask)  # the table pads questions to the longest candidate too
        cpos = {t: i for i, t in enumerate(ctexts)}
        choice_x, choice_m = (torch.from_numpy(a) for a in _trim(cx, cm))
        choice_rows = torch.tensor([[cpos[c] for c in cs] for cs in choice_lists], dtype=torch.long)

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
        choices=choice_rows,
        choice_tokens=choice_x,
        choice_mask=choice_m,
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
    if grounding_labels is not None and len(grounding_labels):
        out.grounding, out.grounding_known = _grounding_tensors(
            grounding_labels, video_ids, {m: out.features(m).shape[:3] for m in MODALITIES}
        )
    return out


#: columns of ``grounding_labels`` (features pipeline, docs/model.md "Grounding")
GROUNDING_COLUMNS = ("video_id", "modality", "t", "s", "instruments")


def _grounding_tensors(
    labels: pd.DataFrame, video_ids: list[str], shapes: dict[str, tuple[int, int, int]]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``grounding_labels`` rows -> targets ``{m: [V, T, S, K']}`` (audio ``S = 1``) and the
    videos that have labels ``[V]``; rows of videos outside ``video_ids`` are ignored. Presence
    alone is ``K' = K`` (multi-hot); each modality's tag columns (``grounding.ATTRIBUTES``),
    when the labels have them, add K each
    (:func:`r2scp_pipeline.grounding.tag_target`): audio ``3K``, visual ``2K``."""
    _require_columns(labels, GROUNDING_COLUMNS, "grounding_labels")
    vpos = {v: i for i, v in enumerate(video_ids)}
    out, known = {}, torch.zeros(len(video_ids), dtype=torch.bool)
    for m, (v, t, s) in shapes.items():
        s = 1 if m == "audio" else s
        rows = labels[labels["modality"] == m]
        rows = rows[rows["video_id"].astype(str).isin(vpos)]
        names = ATTRIBUTES[m]
        cols = [rows[c] for c in names] if all(c in labels.columns for c in names) else []
        y = torch.zeros(v, t, s, len(avqa.INSTRUMENTS) * (1 + len(cols)))
        for vid, ti, si, inst, *tag in zip(rows["video_id"].astype(str), rows["t"], rows["s"],
                                           rows["instruments"], *cols, strict=True):  # fmt: skip
            if not (0 <= ti < t and 0 <= si < s):
                raise ValueError(
                    f"grounding_labels: video {vid} {m} row t={ti}, s={si} is outside the "
                    f"features' [T, S] = [{t}, {s}] (rebuild the labels with the features)"
                )
            try:
                y[vpos[vid], ti, si] = torch.from_numpy(tag_target(list(inst), [list(x) for x in tag]))
            except ValueError as exc:
                raise ValueError(f"grounding_labels: video {vid} {m} row t={ti}: {exc}") from None
        known[torch.tensor(sorted({vpos[x] for x in rows["video_id"].astype(str)}), dtype=torch.long)] = True
        out[m] = y
    return out, known


def _trim(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the padding columns no selected text uses (the table pads to its longest text)."""
    width = int(mask.any(0).nonzero()[0].max()) + 1 if mask.any() else 1
    return np.ascontiguousarray(x[:, :width]), np.ascontiguousarray(mask[:, :width])


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
    if modality not in (*MODALITIES, "both"):
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
