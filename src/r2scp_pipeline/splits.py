"""Splits and split protocols: which videos belong to which split, and what the corpus is.

The official MUSIC-AVQA files split by *question*: one video may have questions in train, val
and test. A video therefore belongs to a *set* of splits, recorded in ``video_index`` as

* ``splits``: the splits the video has questions in, joined with ``+`` in train/val/test order
  (``"train+test"``), after the split protocol;
* ``in_train``, ``in_val``, ``in_test``: the same as booleans, for filtering;
* ``annotated_splits``: the split files the video appears in, before the protocol.

``dataset.protocol`` (applied once, by the ``dataset`` pipeline; everything downstream reads
the result from ``video_index`` / ``qa_pairs``):

* ``official``: the files as published; videos may be shared between splits. The memory bank
  (corpus) is the videos with training questions, so a test video that also has training
  questions is in the corpus (it is never retrieved for itself).
* ``video_disjoint``: every video belongs to one split: a video with a test question keeps only
  its test questions, a video with a val question (and none in test) only its val questions.
  The training questions and the corpus lose every val/test video.
* ``video_split``: the files must already split by video (the embedded MiniMusic-AVQA
  generator does); a video in two split files is an error.

This module holds the shared vocabulary; ``pipelines/dataset`` applies the protocol,
``build_index``, ``data.py`` and ``evaluate`` read memberships through :func:`membership`.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

#: Splits in the order they are read and reported.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: ``video_index`` boolean column of each split.
SPLIT_FLAGS: dict[str, str] = {s: f"in_{s}" for s in SPLITS}
#: Valid values of ``dataset.protocol`` and what each means (shown in reports).
PROTOCOLS: dict[str, str] = {
    "official": "official split by question; videos may have questions in several splits; "
    "corpus = videos with training questions",
    "video_disjoint": "official questions, videos made disjoint: a video keeps only the "
    "questions of its latest split (test > val > train); corpus = videos with training "
    "questions, none of which has a val or test question",
    "video_split": "the annotation files split by video (each video in one split); "
    "corpus = training videos",
}
#: ``dataset.protocol: null`` -> the protocol of each ``dataset.source``.
DEFAULT_PROTOCOL: dict[str, str] = {
    "music_avqa": "official", "avqa": "official", "embedded": "video_split",
}  # fmt: skip
#: Separator of ``splits`` / ``annotated_splits``.
SEP = "+"


def join_splits(splits: Iterable[str]) -> str:
    """``{"test", "train"}`` -> ``"train+test"`` (train/val/test order; unknown names last)."""
    names = set(splits)
    return SEP.join(sorted(names, key=lambda s: (SPLITS.index(s) if s in SPLITS else 99, s)))


def resolve_protocol(protocol: str | None, source: str) -> str:
    """The protocol to apply: ``dataset.protocol``, or the source's default when it is null."""
    if protocol is None:
        return DEFAULT_PROTOCOL[source]
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"parameter dataset.protocol is {protocol!r}; valid values: "
            f"{', '.join(PROTOCOLS)} (or null for the source's default)"
        )
    return protocol


def membership(video_index: pd.DataFrame) -> pd.DataFrame:
    """Boolean ``[video, split]`` table (index ``video_id``, columns ``train, val, test``).

    Reads the ``in_<split>`` columns; a ``video_index`` with only a ``split`` column (one split
    per video, or ``+``-joined splits; tables written before shared videos existed) is read
    too. Errors name the table and the columns it lacks.
    """
    ids = video_index["video_id"].astype(str) if "video_id" in video_index else None
    if ids is None:
        raise ValueError(f"video_index lacks column 'video_id'; it has {list(video_index.columns)}")
    flags = list(SPLIT_FLAGS.values())
    if all(c in video_index.columns for c in flags):
        out = pd.DataFrame(
            {s: video_index[SPLIT_FLAGS[s]].astype(bool).to_numpy() for s in SPLITS},
            index=pd.Index(ids, name="video_id"),
        )
    elif "split" in video_index.columns or "splits" in video_index.columns:
        col = "splits" if "splits" in video_index.columns else "split"
        sets = [set(str(v).split(SEP)) for v in video_index[col]]
        out = pd.DataFrame(
            {s: [s in v for v in sets] for s in SPLITS}, index=pd.Index(ids, name="video_id")
        )
    else:
        raise ValueError(
            f"video_index lacks the split columns {flags} (or 'split'); it has "
            f"{list(video_index.columns)}: re-run the dataset pipeline"
        )
    return out


def videos_in(video_index: pd.DataFrame, split: str) -> list[str]:
    """Sorted ids of the videos with questions in ``split`` (shared videos included)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    m = membership(video_index)
    return sorted(m.index[m[split]].tolist())


def splits_of(video_index: pd.DataFrame) -> dict[str, str]:
    """``{video_id: "train+test"}``: the ``+``-joined splits of every video."""
    m = membership(video_index)
    return {
        str(v): join_splits(s for s in SPLITS if row[s])
        for v, row in zip(m.index, m.to_dict("records"), strict=True)
    }
