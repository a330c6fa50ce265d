"""One schema per parameter group, checked before any node of a ``kedro run`` runs.

The yml files (``conf/base/parameters*.yml``) hold the defaults and document every value; the
classes below only say which keys exist and what type each value has. ``extra="forbid"`` makes
a typo an error (``mix.rank_los_weight``, ``pretrain.epoch``, ``build_index.neighbours``) and
``strict=True`` makes a wrong type one (no ``"3"`` for 3, no ``true`` for 1; an integer is
accepted where a number is expected, so ``--params=mix.rank_loss_weight=0`` works).

:func:`validate_parameters` is called by ``hooks.EarlyChecks`` on the merged parameters
(conf/base, the run environment, ``--params``); nodes keep reading the plain dicts. It raises
one :class:`ParameterError` listing every problem, each naming the full dotted key:

- unknown key: ``unknown parameter mix.rank_los_weight; did you mean mix.rank_loss_weight?``
- wrong type: ``dataset.embedded.questions_per_video=3: expected a list [low, high] of two
  integers``
- missing key: ``parameter pretrain.epochs is missing``

Choices (``features.on_error: raise | skip``, ...) and ranges are still checked where they are
used (the nodes, ``R2ScPConfig``, ``evaluate/config.py``), with messages naming the key.

Adding a parameter: add it to the yml file *and* to its class here (a test validates conf/base
and conf/test through ``OmegaConfigLoader``).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ParameterError(ValueError):
    """Bad parameters: the message lists every problem, each naming its dotted key."""


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _expect(text: str) -> Any:
    """Field metadata: what the error message says is expected."""
    return Field(json_schema_extra={"expected": text})


T = typing.TypeVar("T")
Pair = Annotated[list[T], Field(min_length=2, max_length=2)]  # a list of exactly two


# ---- project-wide (conf/base/parameters.yml) ----------------------------------------------------
# seed: int (a top-level value, see Parameters)


# ---- dataset (conf/base/parameters_dataset.yml) -------------------------------------------------
class SplitFractions(_Schema):
    train: float
    val: float
    test: float


class EmbeddedParams(_Schema):
    """``dataset.embedded``: the generated MiniMusic-AVQA."""

    root: str
    num_videos: int
    split_fractions: SplitFractions
    questions_per_video: Pair[int] = _expect("a list [low, high] of two integers")
    train_questions_per_video: Pair[int] | None = None  # training videos only (null = the same)
    seconds: int
    sample_rate: int
    frame_size: int
    sound_source: str
    splits_sound_source: dict[str, str]
    sounding_prob: float
    offscreen_prob: float
    duplicate_prob: float
    voiceover_prob: float
    indoor_prob: float
    jpeg_quality: int
    visual_cue: bool = True  # the glow / hop on an instrument while it sounds
    num_workers: int
    answer_format: str  # open_ended (MUSIC-AVQA files) | multiple_choice (AVQA files)


class MusicAvqaParams(_Schema):
    """``dataset.music_avqa``: the official annotations (read when ``source`` is music_avqa)."""

    annotations_dir: str | None
    media_dir: str | None


class AvqaParams(_Schema):
    """``dataset.avqa``: the AVQA release (read when ``source`` is avqa; ``val_fraction`` also
    when the embedded data are multiple choice)."""

    annotations_dir: str | None
    media_dir: str | None
    files: dict[str, str | None]  # project split -> file name in annotations_dir (or null)
    val_fraction: float


class DatasetParams(_Schema):
    source: str  # embedded | music_avqa | avqa
    protocol: str | None  # official | video_disjoint | video_split | null
    embedded: EmbeddedParams
    music_avqa: MusicAvqaParams
    avqa: AvqaParams


# ---- features (conf/base/parameters_features.yml) -----------------------------------------------
class LogmelParams(_Schema):
    sample_rate: int
    window_seconds: float
    hop_seconds: float
    n_fft: int
    n_mels: int
    fmin: float
    fmax: float
    log_offset: float
    pooling: str  # frames | mean_std | mean
    frames_per_segment: int


class PrecomputedParams(_Schema):
    dir: str | None
    pattern: str


class AudioFeatureParams(_Schema):
    encoder: str  # logmel | precomputed
    min_rms: float
    logmel: LogmelParams
    precomputed: PrecomputedParams


class EfficientNetParams(_Schema):
    input_size: int
    batch_size: int
    token: str  # head | block


class VisualFeatureParams(_Schema):
    encoder: str  # efficientnet_lite0 | precomputed
    grid: Pair[int] = _expect("a list [rows, cols] of two integers")
    workers: int = 1  # processes encoding one shard's frames (the features do not depend on it)
    efficientnet_lite0: EfficientNetParams
    precomputed: PrecomputedParams


class MiniLMParams(_Schema):
    batch_size: int
    max_tokens: int
    keep_special_tokens: bool


class QuestionFeatureParams(_Schema):
    encoder: str  # minilm
    minilm: MiniLMParams


class FeaturesParams(_Schema):
    segments: int
    on_error: str  # raise | skip
    num_threads: int | None
    source: str  # auto | extracted | mp4
    media_root: str | None
    progress: bool
    audio: AudioFeatureParams
    visual: VisualFeatureParams
    question: QuestionFeatureParams


# ---- build_index (conf/base/parameters_build_index.yml) -----------------------------------------
class EmbeddingsParams(_Schema):
    source: str  # learned | table


class JointSpaceParams(_Schema):
    dim: int
    hidden: int
    dropout: float
    temperature: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    keep: str  # best_val | last


class CorpusParams(_Schema):
    source: str  # train_split | external


class IndexParams(_Schema):
    factory: str  # a faiss.index_factory string (checked by EarlyChecks)
    search_params: str
    train_size: int | None
    threads: int


class NeighborsParams(_Schema):
    n: int


class BuildIndexParams(_Schema):
    embeddings: EmbeddingsParams
    joint_space: JointSpaceParams
    corpus: CorpusParams
    index: IndexParams
    neighbors: NeighborsParams


# ---- corpus (conf/base/parameters_corpus.yml) --------------------------------------------------
class ExternalCorpusParams(_Schema):
    """``corpus``: the external retrieval corpus the ``corpus`` pipeline generates (Table 4)."""

    root: str
    id_prefix: str
    num_videos: int
    seed_offset: int
    sound_source: str  # note_bank | a .sf2 path
    embedded: dict[str, Any]  # overrides of dataset.embedded knobs (checked by the node)


# ---- model + train_missing (conf/base/parameters_model.yml) -------------------------------------
class ModelParams(_Schema):
    """``model``: the parameters of ``R2ScPConfig`` not read from the data (feature widths and
    the answer vocabulary are)."""

    d_model: int
    n_heads: int
    n_layers: int
    ff_mult: int
    dropout: float
    max_len: int
    audio_frontend: str  # auto | conv | linear
    audio_tokens: int
    audio_channels: int
    readout_hops: int | dict[str, int]  # one for every expert, or {audio, visual, text}
    router_hidden: int
    binding_hops: int  # choice 19: cross-modal re-reads after the stage-II readouts (0 = off)
    expert_votes: bool
    use_cmr: bool
    use_cap: bool
    n_retrieve: int
    k_purge: int
    complete_mode: str  # append | off
    saliency: str  # received | paper
    st_temperature: float
    mixing: bool
    answer_format: str  # auto | classes | choices


class TrainMissingParams(_Schema):
    rate: float
    modality: str  # audio | visual | both


# ---- pretrain / mix (conf/base/parameters_{pretrain,mix}.yml) ----------------------------------
class LoopParams(_Schema):
    """What ``training.LoopConfig`` reads, shared by both stages."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float
    min_lr_frac: float
    grad_clip: float
    patience: int
    min_delta: float
    eval_batch_size: int
    device: str  # auto | cpu | cuda...
    checkpoint_dir: str | None
    resume: bool
    max_epochs_this_run: int | None
    threads: int | None
    samples_per_epoch: int | None = None  # training questions drawn per epoch (None = all)


class AudioEncoderParams(_Schema):
    """``pretrain.audio_encoder``: the audio encoder's pretraining on generated videos."""

    videos: int = 0  # generated audio-only videos (0 = no pretraining)
    epochs: int = 15
    batch_size: int = 32
    lr: float = 2.0e-3
    weight_decay: float = 0.01
    seed_offset: int = 2000  # generator seed = seed + seed_offset (>= 1)


class PretrainParams(LoopParams):
    stage_one: bool
    grounding_weight: float = 0.0  # weight of the grounding heads' loss (0 = eq. 10 alone)
    grounding_attributes: bool = False  # the audio head also tags how loud / rhythmic (grounding.py)
    grounding_playing: bool = False  # the visual head also tags which instruments are played
    audio_encoder: AudioEncoderParams = AudioEncoderParams()
    expert_processes: int = 1  # stage I's experts side by side in 1, 2 or 3 processes (same weights)


class MixParams(LoopParams):
    drop_rate: float
    drop_modalities: list[str]
    rank_loss_weight: float
    val_settings: list[str]
    batch_by_video: bool = False  # a batch holds whole videos' drawn questions (CAP's SA once per video)
    draw: Literal["questions", "videos"] = "questions"  # what samples_per_epoch draws: questions or whole videos


# ---- evaluate (conf/base/parameters_evaluate.yml; checked further by evaluate/config.py) -------
class AblationParams(_Schema):
    """One ``evaluate.ablations.<name>``: overrides deep-merged over params:model / pretrain /
    mix; :func:`validate_parameters` validates each merged block against its schema."""

    description: str | None = None
    model: dict[str, Any] = {}
    pretrain: dict[str, Any] = {}
    mix: dict[str, Any] = {}


class GenerativeParams(_Schema):
    d_model: int
    layers: int
    heads: int
    dropout: float
    epochs: int
    patience: int
    batch_size: int
    lr: float
    weight_decay: float
    samples_per_epoch: int | None = None  # training questions drawn per epoch (None = all)


class ReportParams(_Schema):
    table_missing_rate: float
    plot_metric: Pair[str] = _expect("a list [section, metric]")
    bootstrap: int


class SweepParams(_Schema):
    enabled: bool
    retrain: bool
    n: list[int]
    k: list[int]
    settings: list[str]
    missing_rate: float


class EvaluateParams(_Schema):
    split: str
    settings: list[str]
    missing_rates: list[float]
    methods: list[str]
    seeds: list[int] | None
    all_ablations: bool
    paper_columns: str
    batch_size: int
    threads: int | None
    variant_checkpoint_dir: str | None
    ablations: dict[str, AblationParams]
    generative: GenerativeParams
    report: ReportParams
    sweep: SweepParams


# ---- all of them --------------------------------------------------------------------------------
class Parameters(_Schema):
    """Every parameter group (``catalog.load("parameters")``)."""

    seed: int
    dataset: DatasetParams
    features: FeaturesParams
    build_index: BuildIndexParams
    corpus: ExternalCorpusParams
    model: ModelParams
    train_missing: TrainMissingParams
    pretrain: PretrainParams
    mix: MixParams
    evaluate: EvaluateParams


#: Which schema validates what an ablation overrides (the merged block).
ABLATION_SCHEMAS: dict[str, type[_Schema]] = {
    "model": ModelParams,
    "pretrain": PretrainParams,
    "mix": MixParams,
}


# ---- error messages -----------------------------------------------------------------------------
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _describe(annotation: Any) -> str:
    """``int | None`` -> 'an integer or null', ``list[float]`` -> 'a list of numbers', ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _describe(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is list:
        inner = _describe(args[0]) if args else "values"
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}
        return f"a list of {plural.get(inner, inner)}"
    if origin is dict:
        return f"a mapping of names to {_describe(args[1])}" if args else "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping with keys {list(annotation.model_fields)}"
    return _TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _schema_at(schema: type[BaseModel], loc: tuple[Any, ...]):
    """Walk ``loc`` through the schema: (the schema of the innermost mapping reached, the
    deepest field reached as (its loc, its FieldInfo)). Dict values that are schemas
    (``evaluate.ablations.<name>``) are walked into; lists are not."""
    current: Any = schema
    field = None
    i = 0
    while i < len(loc):
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(loc[i]) if isinstance(loc[i], str) else None
            if info is None:
                return current, field
            field = (loc[: i + 1], info)
            current = info.annotation
            i += 1
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin is dict and args and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            current = args[1]
            i += 1  # the mapping's key (e.g. the ablation's name)
            continue
        break
    return current, field


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        data = data[part]
    return data


def _messages(
    err: ValidationError, schema: type[BaseModel], data: Any, prefix: tuple[Any, ...]
) -> list[tuple[Any, str]]:
    """(the top-level key of ``data`` the problem is under, the message) per problem."""
    out: list[tuple[Any, str]] = []
    for e in err.errors():
        loc = tuple(e["loc"])
        top = loc[0] if loc else None
        if e["type"] == "extra_forbidden":
            parent, _ = _schema_at(schema, loc[:-1])
            known = list(getattr(parent, "model_fields", {}))
            key = _dotted(prefix + loc)
            base = _dotted(prefix + loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=3, cutoff=0.6)
            if close:
                names = [f"{base}.{k}" if base else k for k in close]
                hint = "did you mean " + " or ".join(names) + "?"
            else:
                hint = f"known keys{' of ' + base if base else ''}: {known}"
            out.append((top, f"unknown parameter {key}; {hint}"))
            continue
        if e["type"] == "missing":
            where = f"parameter {_dotted(prefix + loc)}"
            out.append((top, f"{where} is missing (see conf/base/parameters*.yml)"))
            continue
        _, field = _schema_at(schema, loc)
        if field is None:
            out.append((top, f"{_dotted(prefix + loc)}: {e['msg']}"))
            continue
        floc, info = field
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        expected = extra.get("expected") or _describe(info.annotation)
        value = _value_at(data, floc)
        out.append((top, f"{_dotted(prefix + floc)}={value!r}: expected {expected}"))
    return list(dict.fromkeys(out))  # one message per key (unions report each member)


def _check(
    schema: type[BaseModel], data: Any, prefix: tuple[Any, ...] = ()
) -> list[tuple[Any, str]]:
    try:
        schema.model_validate(data)
    except ValidationError as err:
        return _messages(err, schema, data, prefix)
    return []


def validate_parameters(params: Mapping[str, Any]) -> Parameters:
    """Validate every parameter group; raise :class:`ParameterError` listing every problem.

    Each ablation's ``model`` / ``pretrain`` / ``mix`` overrides are validated merged over the
    block they override (a typo there is as much an error as in the block itself)."""
    data = dict(params or {})
    errors = [msg for _, msg in _check(Parameters, data)]
    ablations = (data.get("evaluate") or {}).get("ablations")
    if isinstance(ablations, Mapping):
        for name, spec in ablations.items():
            if not isinstance(spec, Mapping):
                continue  # reported above
            for block, schema in ABLATION_SCHEMAS.items():
                over, base = spec.get(block), data.get(block)
                if not over or not isinstance(over, Mapping) or not isinstance(base, Mapping):
                    continue
                merged = {**base, **over}
                msgs = _check(schema, merged, ("evaluate", "ablations", name, block))
                # only what the override brought in (the block's own problems are reported)
                errors += [msg for top, msg in msgs if top in over]
    if errors:
        raise ParameterError(
            "bad parameters (conf/<env>/parameters*.yml or --params):\n  - "
            + "\n  - ".join(dict.fromkeys(errors))
        )
    return Parameters.model_validate(data)
