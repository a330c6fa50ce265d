"""R2ScP (section 3 of the paper), one small module per part, nanoGPT style.

Shapes: ``B`` batch, ``T`` audio/visual segments (10), ``S_m`` raw tokens per segment of
modality ``m`` (visual: spatial grid cells; audio: log-mel frames), ``L_m`` expert tokens of
``m`` (visual ``T * S_v``, audio ``T * P`` with ``P = audio_tokens``), ``Lq`` question tokens,
``n`` retrieved neighbours, ``k`` purification budget, ``d`` model width, ``D_m`` raw feature
width. Every choice the paper leaves open is listed, with its equation, in ``docs/model.md``.

    raw [B, T, S_m, D_m] --Phi_m (TokenEncoder | AudioFrontEnd)--> [B, L_m, d]
        --E_m (ModalityExpert)--> H_m [B, L_m, d]
    missing m:   CrossModalRetrieval (eq. 4) -> H_miss -> ContextAwarePurification (eqs. 2-9)
    each H_m --ExpertReadout--> h_m [B, d] --Router (eq. 11)--> alpha [B, 3]
    Z_joint = sum_m alpha_m h_m (eq. 12) --AnswerDecoder--> logits [B, n_answers]
        (+ sum_m alpha_m log P_m of the frozen stage-I heads with ``expert_votes``)
        (multiple choice: --ChoiceDecoder vs the C candidates' E_t(Phi_t(text))--> [B, C])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vocabulary import EXPERTS, MISSING_CODES, MODALITIES, OTHER

#: config fields that shape the experts (Phi_m, E_m, stage-I heads): stage II must match them.
EXPERT_FIELDS = (
    "d_audio", "d_visual", "d_text", "s_audio", "s_visual", "n_answers", "d_model", "n_heads",
    "n_layers", "ff_mult", "max_len", "audio_frontend", "audio_tokens", "audio_channels",
    "answer_format", "readout_hops",
)  # fmt: skip
AUDIO_FRONTENDS = ("auto", "conv", "linear")
#: classes: logits over a fixed answer vocabulary (MUSIC-AVQA's 42); choices: a score per
#: candidate answer of the question (AVQA's 4), n_answers = candidates per question.
ANSWER_FORMATS = ("classes", "choices")


@dataclass
class R2ScPConfig:
    d_audio: int = 128  # Da, read from the data
    d_visual: int = 1280  # Dv
    d_text: int = 384  # Dt
    s_audio: int = 1  # S_a: raw audio tokens per segment (log-mel frames), read from the data
    s_visual: int = 1  # S_v: raw visual tokens per segment (grid cells), read from the data
    n_answers: int = 42  # len(avqa.ANSWERS); with answer_format "choices": candidates per question
    d_model: int = 128  # d: width of every expert's representation H_m
    n_heads: int = 4
    n_layers: int = 1  # transformer layers per expert
    # attention hops of each expert's question-guided readout (ExpertReadout): one number for
    # every expert or {audio, visual, text}; stored as the mapping. 1 = one query read, as
    # written before the field (checkpoints without it load as 1 everywhere)
    readout_hops: int | dict[str, int] = 1
    ff_mult: int = 2  # MLP width = ff_mult * d
    dropout: float = 0.1
    max_len: int = 64  # learned positions (>= T and the longest question)
    # Phi_a: "conv" = AudioFrontEnd over each segment's [S_a, D_a] log-mel frames (learned in
    # stage I); "linear" = TokenEncoder (one token per raw token, e.g. precomputed VGGish);
    # "auto" = conv when S_a > 1, else linear
    audio_frontend: str = "auto"
    audio_tokens: int = 3  # P: tokens per segment out of the conv front end
    audio_channels: int = 64  # width c of the audio front end (spectral map, temporal convs)
    n_retrieve: int = 3  # n of eq. 4 (paper's best, Fig. 4)
    k_purge: int = 5  # k of eqs. 5 and 7 (paper's best, Fig. 4)
    use_cmr: bool = True  # Table 2 "CMR": retrieve the missing modality (else a zero fill)
    use_cap: bool = True  # Table 2 "CAP": purify the recovered modality
    complete_mode: str = "append"  # complete samples: "off" (experts only) or "append" (see docs)
    saliency: str = "received"  # eq. 7 score: "received" attention, or "paper" (Alg. 1 line 18)
    st_temperature: float = 0.1  # straight-through noise mask (trains W_proj), see CAP
    mixing: bool = True  # False: Table 3 "w/o expert mixing" (average the stage-I experts)
    router_hidden: int = 64
    # binding hops (docs/model.md choice 19, not in the paper): after the stage-II readouts, each
    # modality's readout reads its own tokens again with a query that carries what the *other*
    # modality's readout found ("where is the instrument that sounds first?"); 0 = eq. 12 on the
    # unimodal readouts alone, as written before the field
    binding_hops: int = 0
    # expert_votes (docs/model.md "Expert votes"; not in the paper): the frozen stage-I heads'
    # answers (eq. 10) on each expert's own or recovered tokens, weighted by the router's alpha,
    # are added to the decoder's logits, so stage II starts from the router-weighted experts.
    # conf/base turns it on; False here keeps checkpoints written before the field as they were
    expert_votes: bool = False
    answer_format: str = "classes"  # "classes" (AnswerDecoder) | "choices" (ChoiceDecoder)
    # grounding heads (stage I only, docs/model.md "Grounding"): K instrument classes tagged on
    # the audio expert's segments and the visual expert's cells; 0 = none (the paper's stage I)
    n_grounding: int = 0
    # per-class attribute tags of the audio grounding head after its K presence tags (how loud
    # and how rhythmic, r2scp_pipeline/grounding.py); 0 = presence only
    grounding_attributes: int = 0
    # per-class tags of the visual grounding head after its K presence tags (which instruments
    # of the cell are being played in that second); 0 = presence only
    grounding_visual_attributes: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model.d_model={self.d_model} must be divisible by model.n_heads={self.n_heads}"
            )
        if self.n_retrieve < 1:
            raise ValueError(f"model.n_retrieve must be >= 1, got {self.n_retrieve}")
        if self.k_purge < 0:
            raise ValueError(f"model.k_purge must be >= 0, got {self.k_purge}")
        if self.complete_mode not in ("off", "append"):
            raise ValueError(
                f"model.complete_mode must be 'off' or 'append', got {self.complete_mode!r}"
            )
        if self.saliency not in ("received", "paper"):
            raise ValueError(f"model.saliency must be 'received' or 'paper', got {self.saliency!r}")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(
                f"model.answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}"
            )
        if self.audio_frontend not in AUDIO_FRONTENDS:
            raise ValueError(
                f"model.audio_frontend must be one of {AUDIO_FRONTENDS}, got {self.audio_frontend!r}"
            )
        if self.n_grounding < 0:
            raise ValueError(f"model.n_grounding must be >= 0, got {self.n_grounding}")
        for name in ("grounding_attributes", "grounding_visual_attributes"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if self.binding_hops < 0:
            raise ValueError(f"model.binding_hops must be >= 0, got {self.binding_hops}")
        for name in ("s_audio", "s_visual", "audio_tokens", "audio_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        hops = self.readout_hops
        hops = {m: hops for m in EXPERTS} if isinstance(hops, int) else dict(hops)
        if set(hops) != set(EXPERTS) or any(not isinstance(v, int) or v < 1 for v in hops.values()):
            raise ValueError(
                f"model.readout_hops must be a whole number >= 1 or one per expert "
                f"{{{', '.join(f'{m}: n' for m in EXPERTS)}}}, got {self.readout_hops!r}"
            )
        self.readout_hops = {m: hops[m] for m in EXPERTS}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> R2ScPConfig:
        """Build from a dict, rejecting unknown keys (a typo in ``model:`` is an error)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model parameters {unknown}; known: {sorted(known)}")
        return cls(**d)

    def expert_dict(self) -> dict:
        return {k: getattr(self, k) for k in EXPERT_FIELDS}

    @property
    def conv_audio(self) -> bool:
        """Whether Phi_a is the convolutional front end (see ``audio_frontend``)."""
        return self.audio_frontend == "conv" or (self.audio_frontend == "auto" and self.s_audio > 1)

    def tokens_per_segment(self, modality: str) -> int:
        """Expert tokens per segment: P for conv audio, else the raw tokens S_m (text: 1)."""
        if modality == "audio":
            return self.audio_tokens if self.conv_audio else self.s_audio
        return self.s_visual if modality == "visual" else 1

    @property
    def recovers_complete(self) -> bool:
        """Whether complete samples get retrieved/purified tokens appended (see docs/model.md)."""
        return self.complete_mode == "append" and (self.use_cmr or self.use_cap)


def sentence_vector(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of raw question token features: [B, Lq, Dt], [B, Lq] -> [B, Dt]."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class MultiHeadAttention(nn.Module):
    """Multi-head attention; optionally returns the weights and the pre-softmax logits."""

    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.h, self.dk = n_heads, d // n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, d] -> [B, h, L, dk]
        return x.view(x.shape[0], x.shape[1], self.h, self.dk).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        ctx: torch.Tensor,
        ctx_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        # x [B, L, d] queries; ctx [B, Lc, d] keys/values; ctx_mask [B, Lc] True = real token
        if need_weights:
            logits, v = self.scores(self.q(x), ctx, ctx_mask)  # [B, h, L, Lc]
            weights = logits.softmax(-1)  # [B, h, L, Lc], rows sum to 1
            return self.combine(weights, v), weights, logits
        q, k, v = self._split(self.q(x)), self._split(self.k(ctx)), self._split(self.v(ctx))
        attn_mask = None if ctx_mask is None else ctx_mask[:, None, None, :]  # [B, 1, 1, Lc]
        # no dropout on attention weights (residual branches have it): cheaper on CPU
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.o(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)), None, None

    def scores(
        self, q_proj: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-softmax logits [B, h, L, Lc] (-inf at padded ctx tokens) of projected queries
        q_proj = self.q(x) [B, L, d], and the values [B, h, Lc, dk]: with :meth:`combine`, the
        attention of any subset of the queries."""
        q, k, v = self._split(q_proj), self._split(self.k(ctx)), self._split(self.v(ctx))
        logits = q @ k.transpose(-2, -1) / math.sqrt(self.dk)  # [B, h, L, Lc]
        if ctx_mask is not None:
            logits = logits.masked_fill(~ctx_mask[:, None, None, :], float("-inf"))
        return logits, v

    def combine(self, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention output of ``weights`` [B, h, L, Lc] over values ``v`` [B, h, Lc, dk] -> [B, L, d]."""
        y = (weights @ v).transpose(1, 2)  # [B, L, h, dk]
        return self.o(y.reshape(y.shape[0], y.shape[1], -1))

    def attend_one(
        self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``forward(x, ctx, ctx_mask)[0]`` for a single query, x [B, 1, d] -> [B, 1, d],
        without projecting every context token.

        Per head h, q_h . (W_k^h c + b_k^h) = (W_k^h' q_h) . c + const: the constant is the same
        for every token and cancels in the softmax. sum_j a_j (W_v^h c_j + b_v^h) =
        W_v^h (sum_j a_j c_j) + b_v^h because the weights sum to one. So the query is mapped
        into ctx's space and the weighted context is projected once: O(L d h) per row instead
        of O(L d^2) for the keys and values of all L tokens (the readouts' main cost).
        """
        b, d = x.shape[0], x.shape[-1]
        wk = self.k.weight.view(self.h, self.dk, d)  # [h, dk, d]
        wv = self.v.weight.view(self.h, self.dk, d)
        q = self.q(x).view(b, self.h, self.dk)  # [B, h, dk]
        qk = torch.einsum("bhk,hkd->bhd", q, wk)  # [B, h, d]: the query in ctx's space
        s = torch.einsum("bhd,bld->bhl", qk, ctx) / math.sqrt(self.dk)  # [B, h, Lc]
        if ctx_mask is not None:
            s = s.masked_fill(~ctx_mask[:, None, :], float("-inf"))
        pooled = torch.einsum("bhl,bld->bhd", s.softmax(-1), ctx)  # [B, h, d]
        y = torch.einsum("bhd,hkd->bhk", pooled, wv) + self.v.bias.view(self.h, self.dk)
        return self.o(y.reshape(b, 1, d))  # [B, 1, d]


class MLP(nn.Module):
    def __init__(self, d: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.fc, self.proj, self.drop = (
            nn.Linear(d, ff_mult * d),
            nn.Linear(ff_mult * d, d),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class EncoderBlock(nn.Module):
    """Pre-LN transformer encoder layer (self-attention + MLP)."""

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), MultiHeadAttention(d, n_heads)
        self.ln2, self.mlp = nn.LayerNorm(d), MLP(d, ff_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, mask)[0])
        return x + self.mlp(self.ln2(x))


class FeatureEncoder(nn.Module):
    """Phi_t: question tokens [B, Lq, Dt] -> [B, Lq, d] (LayerNorm, linear map, learned positions)."""

    def __init__(self, d_in: int, d: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.ln, self.proj = nn.LayerNorm(d_in), nn.Linear(d_in, d)
        self.pos = nn.Parameter(torch.zeros(max_len, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pos.shape[0]:
            raise ValueError(
                f"sequence of {x.shape[1]} tokens exceeds model.max_len={self.pos.shape[0]}"
            )
        return self.drop(self.proj(self.ln(x)) + self.pos[: x.shape[1]])  # [B, L, d]


def _check_segments(x: torch.Tensor, n_sub: int, pos_t: torch.Tensor, what: str) -> None:
    if x.dim() != 4 or x.shape[2] != n_sub:
        raise ValueError(f"{what} expects [B, T, {n_sub}, D] features, got {list(x.shape)}")
    if x.shape[1] > pos_t.shape[0]:
        raise ValueError(f"{x.shape[1]} segments exceed model.max_len={pos_t.shape[0]}")


class TokenEncoder(nn.Module):
    """Phi_m for token features: [B, T, S, D_m] -> [B, T*S, d], one token per (segment, cell).

    LayerNorm and a linear map per raw token, plus a learned time embedding (segment t) and a
    learned place embedding (cell s: where in the frame), so the expert knows when and where.
    """

    def __init__(self, d_in: int, d: int, max_len: int, n_sub: int, dropout: float) -> None:
        super().__init__()
        self.ln, self.proj = nn.LayerNorm(d_in), nn.Linear(d_in, d)
        self.pos_t = nn.Parameter(torch.zeros(max_len, d))
        self.pos_s = nn.Parameter(torch.zeros(n_sub, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_segments(x, self.pos_s.shape[0], self.pos_t, "TokenEncoder")
        b, t, s, _ = x.shape
        h = self.proj(self.ln(x)) + self.pos_t[:t, None] + self.pos_s  # [B, T, S, d]
        return self.drop(h.reshape(b, t * s, -1))  # [B, T*S, d]


class AudioFrontEnd(nn.Module):
    """Phi_a for log-mel frames: [B, T, S_a, n_mels] -> [B, T*P, d], learned in stage I.

    Each one-second segment's S_a frames: one global input normalisation (level differences
    between clips and bands survive: loudness), a per-frame spectral map n_mels -> c (timbre:
    which bands sound), two strided temporal convolutions (onsets, rhythm inside the segment),
    average-pooled to P time steps, each mapped to one token of width d. Time and
    within-segment position embeddings as :class:`TokenEncoder`. 1-D convolutions keep it
    cheap on a CPU (a 2-D CNN over the spectrogram was 7x slower per sample here).
    """

    def __init__(self, n_mels: int, n_frames: int, d: int, max_len: int, tokens: int,
                 channels: int, dropout: float) -> None:  # fmt: skip
        super().__init__()
        self.n_frames = n_frames
        self.norm = nn.BatchNorm1d(1)  # one mean / variance over every band and frame
        c = channels
        self.spectral = nn.Linear(n_mels, c)  # [S_a, M] -> [S_a, c]
        self.temporal = nn.Sequential(
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU(),  # [c, S_a/2]
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU(),  # [c, S_a/4]
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool1d(tokens)  # [c, P]
        self.proj = nn.Linear(c, d)
        self.pos_t = nn.Parameter(torch.zeros(max_len, d))
        self.pos_p = nn.Parameter(torch.zeros(tokens, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_segments(x, self.n_frames, self.pos_t, "AudioFrontEnd")
        b, t, f, m = x.shape
        y = self.norm(x.reshape(b * t * f, 1, m)).view(b * t, f, m)  # [B*T, S_a, M]
        y = F.gelu(self.spectral(y)).transpose(1, 2)  # [B*T, c, S_a]
        y = self.pool(self.temporal(y)).transpose(1, 2)  # [B*T, P, c]
        h = self.proj(y).view(b, t, -1, self.proj.out_features)  # [B, T, P, d]
        h = h + self.pos_t[:t, None] + self.pos_p
        return self.drop(h.reshape(b, -1, h.shape[-1]))  # [B, T*P, d]


class ModalityExpert(nn.Module):
    """E_m (section 3.4): a transformer encoder over one modality's tokens only."""

    def __init__(self, d: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            EncoderBlock(d, n_heads, ff_mult, dropout) for _ in range(n_layers)
        )
        self.ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:  # x [B, L, d]
            x = block(x, mask)
        return self.ln(x)  # H_m [B, L, d]


class ReadoutHop(nn.Module):
    """One attention hop of :class:`ExpertReadout`: the query [B, 1, d] reads H_m [B, L, d]
    (cross-attention, LayerNorm, MLP) and comes back updated [B, 1, d]."""

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d, n_heads)
        self.ln1, self.ln2, self.mlp = nn.LayerNorm(d), nn.LayerNorm(d), MLP(d, ff_mult, dropout)

    def forward(self, x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.ln1(x + self.attn.attend_one(x, h, mask))  # [B, 1, d]
        return x + self.mlp(self.ln2(x))  # [B, 1, d]


class ExpertReadout(ReadoutHop):
    """Question-guided attention pooling: H_m [B, L, d] -> h_m [B, d].

    This is how the question reaches the unimodal experts (docs/model.md, eq. 10): the query is
    a projection of the question's sentence vector, so h_m answers *this* question from
    modality m alone; the expert's encoder itself never sees another modality. With
    ``hops > 1`` the query reads H_m again with what the previous hop found (a relation such
    as "the instrument left of the cello" needs one hop to find the cello and one to look
    next to it). The first hop's weights keep their names (checkpoints of one hop load).
    """

    def __init__(self, d: int, d_text: int, n_heads: int, ff_mult: int, dropout: float,
                 hops: int = 1) -> None:  # fmt: skip
        super().__init__(d, n_heads, ff_mult, dropout)
        if hops < 1:
            raise ValueError(f"model.readout_hops must be >= 1, got {hops}")
        self.q_proj = nn.Sequential(nn.LayerNorm(d_text), nn.Linear(d_text, d))
        self.more = nn.ModuleList(ReadoutHop(d, n_heads, ff_mult, dropout) for _ in range(hops - 1))

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor | None, q_sent: torch.Tensor
    ) -> torch.Tensor:
        x = super().forward(self.q_proj(q_sent).unsqueeze(1), h, mask)  # [B, 1, d]
        for hop in self.more:
            x = hop(x, h, mask)
        return x.squeeze(1)  # [B, d]


class BindingHop(nn.Module):
    """One cross-modal hop of the stage-II readouts (choice 19): h_m [B, d] asks H_m [B, L, d]
    again with what the other modality's readout found, h_o [B, d] -> updated h_m [B, d].

    The experts stay unimodal and frozen; only the fusion side binds a sound to a place or an
    order. The query is h_m + W h_o (W starts at zero, so the hop starts as a plain re-read).
    """

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.other = nn.Linear(d, d, bias=False)
        self.hop = ReadoutHop(d, n_heads, ff_mult, dropout)

    def forward(self, h_m: torch.Tensor, h_o: torch.Tensor, tokens: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        x = (h_m + self.other(h_o)).unsqueeze(1)  # [B, 1, d]
        return self.hop(x, tokens, mask).squeeze(1)  # [B, d]


class ChoiceDecoder(nn.Module):
    """Dec for multiple choice: a score per candidate answer, [B, d] x [B, C, d_c] -> [B, C].

    The candidates are the question's C answer texts as vectors of width ``d_cand`` (stage II:
    E_t(Phi_t(text)) pooled over tokens, the question encoder's view of the text; stage-I heads:
    the raw sentence vectors, so each expert's head stays its own). Score = a query from the
    representation against a key from each candidate, scaled dot product; trained with
    cross-entropy over the C candidates.
    """

    def __init__(self, d: int, d_cand: int, dropout: float) -> None:
        super().__init__()
        self.query = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d)
        )
        self.key = nn.Sequential(nn.LayerNorm(d_cand), nn.Linear(d_cand, d))

    def forward(self, z: torch.Tensor, choices: torch.Tensor | None) -> torch.Tensor:
        if choices is None:
            raise ValueError("a multiple-choice model needs the candidate answers of each question")
        q = self.query(z)  # [B, d]
        k = self.key(choices)  # [B, C, d]
        return torch.einsum("bd,bcd->bc", q, k) / math.sqrt(q.shape[-1])  # [B, C]


class ExpertHead(nn.Module):
    """Stage-I answer head of expert ``modality``: P(y | E_m(F_m)) of eq. 10."""

    def __init__(self, cfg: R2ScPConfig, modality: str) -> None:
        super().__init__()
        self.readout = ExpertReadout(cfg.d_model, cfg.d_text, cfg.n_heads, cfg.ff_mult, cfg.dropout,
                                     cfg.readout_hops[modality])  # fmt: skip
        self.choices = cfg.answer_format == "choices"
        self.out = (
            ChoiceDecoder(cfg.d_model, cfg.d_text, cfg.dropout)
            if self.choices
            else nn.Linear(cfg.d_model, cfg.n_answers)
        )

    def forward(
        self,
        h: torch.Tensor,
        mask: torch.Tensor | None,
        q_sent: torch.Tensor,
        choice_sent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # choice_sent [B, C, Dt]: raw sentence vectors of the candidates (multiple choice)
        z = self.readout(h, mask, q_sent)
        return self.out(z, choice_sent) if self.choices else self.out(z)  # [B, n_answers]


class GroundingHeads(nn.Module):
    """Stage-I auxiliary tags (not in the paper; docs/model.md "Grounding"): which of K
    instrument classes sound in each audio segment (and, with A attributes, how loud and how
    rhythmic each is) and are seen in each visual cell (and, with A_v = 1, which of those are
    being played in that second).

    H_a [B, T*P, d] -> segment means [B, T, 1, d] -> logits [B, T, 1, K * (1 + A)];
    H_v [B, T*S_v, d] -> [B, T, S_v, d] -> logits [B, T, S_v, K * (1 + A_v)]. Trained with a per-tag
    binary cross-entropy next to eq. 10, so each expert's tokens say *what* is heard or seen
    *when* and *where*; stage II freezes them with the experts and never reads the tags.
    """

    def __init__(
        self, d: int, n_classes: int, tokens: dict[str, int], attributes: int = 0,
        visual_attributes: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.tokens = dict(tokens)  # expert tokens per segment: {"audio": P, "visual": S_v}
        width = {"audio": n_classes * (1 + attributes), "visual": n_classes * (1 + visual_attributes)}
        self.out = nn.ModuleDict({m: nn.Linear(d, width[m]) for m in MODALITIES})

    def forward(self, modality: str, h: torch.Tensor) -> torch.Tensor:
        b, length, d = h.shape
        x = h.view(b, length // self.tokens[modality], self.tokens[modality], d)  # [B, T, S, d]
        if modality == "audio":
            x = x.mean(2, keepdim=True)  # [B, T, 1, d]: what sounds in the second
        return self.out[modality](x)  # [B, T, S, K]


class CrossModalRetrieval(nn.Module):
    """CMR (section 3.2): H_miss = 1/n sum_i E_miss(Phi_miss(r_i)) (eq. 4).

    Retrieval itself (eq. 1, cosine top-n in the unified space) is precomputed by the
    ``build_index`` pipeline into the ``neighbors`` table; this module averages the experts'
    encodings of the top-n candidates.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, retrieved: torch.Tensor, n: int | None = None) -> torch.Tensor:
        # retrieved [B, R>=n, L, d] = E_miss(Phi_miss(r_i)), best first -> H_miss [B, L, d]
        n = self.n if n is None else n  # n may be overridden at inference (Fig. 4 sweep)
        if not 1 <= n <= retrieved.shape[1]:
            raise ValueError(f"{retrieved.shape[1]} retrieved candidates, n_retrieve = {n}")
        return retrieved[:, :n].mean(1)


class GuidanceBlock(nn.Module):
    """Eq. 6: SA over H_com, then MCA with queries H_com and keys/values the question H_t.

    ``forward`` guides every token. CAP keeps only the k most salient guided tokens, and the
    saliency (eq. 7) reads only the attention maps; so CAP takes the maps of every token
    (``maps``) and guides only its k tokens (``guide``: MCA output, residual, MLP, LayerNorm,
    all token-wise). SA and the MCA queries read H_com alone, a video's: ``maps`` computes them
    once per distinct H_com, and only the MCA over the question per question.
    """

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.sa = nn.LayerNorm(d), MultiHeadAttention(d, n_heads)
        self.ln2, self.mca = nn.LayerNorm(d), MultiHeadAttention(d, n_heads)
        self.ln3, self.mlp = nn.LayerNorm(d), MLP(d, ff_mult, dropout)
        self.ln_out, self.drop = nn.LayerNorm(d), nn.Dropout(dropout)

    def maps(
        self, h_com: torch.Tensor, h_t: torch.Tensor, t_mask: torch.Tensor,
        com_of: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """SA over each distinct H_com, the MCA logits of every token over each question.

        h_com [V, L, d]; h_t [B, Lq, d]; t_mask [B, Lq]; com_of [B]: each question's row of
        h_com (None: one row per question, V = B). Returns x [V, L, d] (H_com after SA),
        A_self [B, h, L, L], the MCA logits [B, h, L, Lq] and values [B, h, Lq, dk].
        """
        x = self.ln1(h_com)
        a, a_self, _ = self.sa(x, x, None, need_weights=True)  # A_self [V, h, L, L]
        x = h_com + self.drop(a)  # [V, L, d]
        q = self.mca.q(self.ln2(x))  # MCA queries [V, L, d]
        if com_of is not None:
            q, a_self = q[com_of], a_self[com_of]  # [B, L, d], [B, h, L, L]
        cross_logits, v = self.mca.scores(q, h_t, t_mask)  # [B, h, L, Lq], [B, h, Lq, dk]
        return x, a_self, cross_logits, v

    def guide(
        self, x: torch.Tensor, cross_logits: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
        com_of: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """H_guided at token positions ``idx`` [B, k] of each question (``maps``' outputs):
        MCA output, residual, MLP and final LayerNorm -> [B, k, d]. The LayerNorm puts guided
        tokens in the experts' output space (they end with LN too)."""
        b, h, _, lq = cross_logits.shape
        row = torch.arange(b, device=x.device) if com_of is None else com_of
        x_k = x[row[:, None], idx]  # [B, k, d]
        logits = cross_logits.gather(2, idx[:, None, :, None].expand(b, h, idx.shape[1], lq))
        x_k = x_k + self.drop(self.mca.combine(logits.softmax(-1), v))  # [B, k, d]
        return self.ln_out(x_k + self.mlp(self.ln3(x_k)))

    def forward(
        self, h_com: torch.Tensor, h_t: torch.Tensor, t_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # h_com [B, L, d]; h_t [B, Lq, d]; t_mask [B, Lq]
        x, a_self, cross_logits, v = self.maps(h_com, h_t, t_mask)
        b, length = h_com.shape[:2]
        every = torch.arange(length, device=h_com.device).expand(b, length)
        return self.guide(x, cross_logits, v, every), a_self, cross_logits  # H_guided [B, L, d]


def token_saliency(
    a_self: torch.Tensor, cross_logits: torch.Tensor, t_mask: torch.Tensor, mode: str = "received"
) -> torch.Tensor:
    """Saliency sigma [B, L] of each H_com token (eq. 7; Algorithm 1 lines 17-18).

    ``paper``: Algorithm 1 line 18 literally, sum_{dim=-1} A_cross + sum_{dim=-1} A_self. Softmax
    rows sum to one, so this is the constant 2 for every token (top-k then picks by index).
    ``received`` (default): the attention each token *receives*, averaged over heads: from the
    other H_com tokens (column sums of A_self) and from the question tokens (the same cross
    logits normalised over H_com tokens, summed over the real question tokens); each part is
    normalised to sum to one over the tokens.
    """
    # a_self [B, h, L, L]; cross_logits [B, h, L, Lq] (-inf at padded question tokens)
    q_real = t_mask[:, None, None, :]  # [B, 1, 1, Lq]
    if mode == "paper":
        a_cross = cross_logits.softmax(-1)
        return (a_cross.sum(-1) + a_self.sum(-1)).mean(1)  # [B, L] == 2 everywhere
    length = a_self.shape[-1]
    recv_self = a_self.sum(2).mean(1) / length  # [B, L]
    q2tok = cross_logits.masked_fill(~q_real, 0.0).softmax(
        2
    )  # over H_com tokens, per question token
    q2tok = q2tok.masked_fill(~q_real, 0.0)
    recv_cross = q2tok.sum(-1).mean(1) / t_mask.sum(-1, keepdim=True).clamp_min(1)  # [B, L]
    return recv_self + recv_cross


class ContextAwarePurification(nn.Module):
    """CAP (section 3.3, Algorithm 1): overwrite the k retrieved tokens most dissonant with the
    available modality by the k most salient question-guided common tokens (eqs. 2-9).

    One instance per recovered modality: W_proj maps the missing expert's space onto the
    available expert's space, where the anchor g_avl lives (eq. 3).
    """

    def __init__(self, cfg: R2ScPConfig) -> None:
        super().__init__()
        self.k, self.saliency, self.tau = cfg.k_purge, cfg.saliency, cfg.st_temperature
        self.w_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # W_proj of eq. 3
        self.guidance = GuidanceBlock(cfg.d_model, cfg.n_heads, cfg.ff_mult, cfg.dropout)

    def forward(
        self,
        h_miss: torch.Tensor,
        h_avl: torch.Tensor,
        h_com: torch.Tensor,
        h_t: torch.Tensor,
        t_mask: torch.Tensor,
        k: int | None = None,
        key: torch.Tensor | None = None,
        group: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # h_miss [B, L, d] (eq. 4); h_avl [B, L', d]; h_com = E_miss(Phi_avl(F_avl)) [B, L', d]
        # k: purification budget of this call (default the configured k_purge; Fig. 4 sweep)
        # key [B]: rows with equal keys have equal h_com / h_t / t_mask (Encodings.key)
        # group [B]: rows with equal groups have equal h_com (Encodings.group: the video)
        b, length, d = h_miss.shape
        k = min(self.k if k is None else k, length, h_com.shape[1])
        g = h_avl.mean(1)  # g_avl [B, d] (eq. 2)
        z = self.w_proj(h_miss)  # H_miss W_proj [B, L, d]
        delta = 1.0 - F.cosine_similarity(z, g.unsqueeze(1), dim=-1, eps=1e-8)  # [B, L] (eq. 3)
        info = {"delta": delta}
        if k == 0:
            return h_miss, info
        top = delta.topk(min(k + 1, length), dim=1)
        noise_idx = top.indices[:, :k]  # Omega_noise [B, k] (eq. 5), most dissonant first
        # Omega_salient [B, k] (eq. 7), most salient first, and those guided tokens (eq. 6)
        src, sal_idx, sigma = self._guide(h_com, h_t, t_mask, k, key, group)  # [B, k, d], [B, k], [B, L']
        # eq. 8/9: the j-th noise position takes the j-th salient guided token, the rest is kept
        injected = h_miss.scatter(1, noise_idx.unsqueeze(-1).expand(-1, -1, d), src)  # [B, L, d]
        # Straight-through mask: the forward value is exactly eq. 9 (the added term is 0), the
        # backward pass sees a soft top-k of delta, so W_proj gets a gradient (docs/model.md).
        vals = top.values.detach()
        thr = (vals[:, k - 1] + vals[:, k]) / 2 if length > k else vals[:, k - 1] - 1.0
        soft = torch.sigmoid((delta - thr.unsqueeze(1)) / self.tau)  # [B, L]
        h_pur = injected + (soft - soft.detach()).unsqueeze(-1) * (injected - h_miss)
        info.update(noise_idx=noise_idx, salient_idx=sal_idx, saliency=sigma)
        return h_pur, info  # H_miss^pur [B, L, d]

    def _guide(self, h_com: torch.Tensor, h_t: torch.Tensor, t_mask: torch.Tensor, k: int,
               key: torch.Tensor | None,
               group: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """The k most salient guided tokens [B, k, d] (eq. 6), their positions [B, k] and the
        saliency sigma [B, L'] (eq. 7), computed once per distinct ``key``; the SA over H_com
        once per distinct ``group``."""
        first, inv = _first_of_each(key)
        if first is not None:  # duplicates: one representative row per key
            h_com, h_t, t_mask = h_com[first], h_t[first], t_mask[first]
            group = None if group is None else group[first]
        first_com, com_of = _first_of_each(group)
        if first_com is not None:
            h_com = h_com[first_com]  # [V, L', d], one per distinct group
        x, a_self, cross_logits, v = self.guidance.maps(h_com, h_t, t_mask, com_of)
        with torch.no_grad():
            sigma = token_saliency(a_self, cross_logits, t_mask, self.saliency)  # [B', L']
        sal_idx = sigma.topk(k, dim=1).indices  # [B', k]
        src = self.guidance.guide(x, cross_logits, v, sal_idx, com_of)  # [B', k, d]
        if inv is not None:
            src, sal_idx, sigma = src[inv], sal_idx[inv], sigma[inv]
        return src, sal_idx, sigma


def _first_of_each(key: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """For ``key`` [B] with repeats: the first row of each distinct key [U] and each row's
    index into them [B]; ``(None, None)`` when ``key`` is None or has no repeats."""
    if key is None:
        return None, None
    uniq, inv = torch.unique(key, return_inverse=True)
    if len(uniq) == len(key):
        return None, None
    first = torch.full((len(uniq),), len(key), dtype=torch.long, device=key.device)
    return first.scatter_reduce(0, inv, torch.arange(len(key), device=key.device), "amin"), inv


class Router(nn.Module):
    """Gating network G (eq. 11): g_m = G(h_m; phi), alpha = softmax_m(g_m) over (a, v, t).

    G is one MLP shared by the experts plus a learned per-expert embedding (so it can keep a
    prior per expert). ``expert_mask`` [B, 3] True removes an expert (logit -inf): the
    router-masking baseline.
    """

    def __init__(self, d: int, hidden: int, n_experts: int = 3) -> None:
        super().__init__()
        self.ln, self.fc = nn.LayerNorm(d), nn.Linear(d, hidden)
        self.expert_emb = nn.Parameter(torch.zeros(n_experts, hidden))
        self.out = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, expert_mask: torch.Tensor | None = None) -> torch.Tensor:
        g = self.out(F.gelu(self.fc(self.ln(h)) + self.expert_emb)).squeeze(-1)  # [B, 3]
        if expert_mask is not None:
            if expert_mask.all(-1).any():
                raise ValueError("expert_mask removes every expert of a sample")
            g = g.masked_fill(expert_mask, float("-inf"))
        return g.softmax(-1)  # alpha [B, 3], sums to 1


class AnswerDecoder(nn.Module):
    """Dec of eq. 12: Z_joint [B, d] -> logits over the answer vocabulary [B, n_answers]."""

    def __init__(self, d: int, n_answers: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d),
            nn.Linear(d, 2 * d),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * d, n_answers),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class Encodings:
    """Expert encodings of one batch (everything upstream of the frozen experts' outputs).

    ``h[m]`` [B, L_m, d]: E_m(Phi_m(F_m)) of the sample's own features (ignored where m is
    missing). ``cand[m]`` [B, L_m, d]: H_miss for m (eq. 4 from the retrieved neighbours, or a
    fill). ``com[m]`` [B, L_other, d]: H_com for recovering m = E_m(Phi_other(F_other)) (Alg. 1
    line 14).
    ``h_text`` [B, Lq, d], ``text_mask`` [B, Lq], ``q_sent`` [B, Dt] (raw sentence vector).
    ``key`` [B] (optional): rows with equal keys share ``com``, ``h_text`` and ``text_mask``
    (the same question of the same video, e.g. the ranking loss's extra passes), so CAP's
    question-guided block (eq. 6), which reads only those, is computed once per key.
    ``group`` [B] (optional): rows with equal groups share ``com`` (the same video), so the
    guidance block's SA over it is computed once per group.
    """

    h: dict[str, torch.Tensor]
    cand: dict[str, torch.Tensor]
    com: dict[str, torch.Tensor]
    h_text: torch.Tensor
    text_mask: torch.Tensor
    q_sent: torch.Tensor
    choices: torch.Tensor | None = None  # [B, C, d] candidates through E_t(Phi_t), pooled
    choice_sent: torch.Tensor | None = None  # [B, C, Dt] candidates' raw sentence vectors
    key: torch.Tensor | None = None
    # [B, 3, n_answers]: the frozen stage-I heads' log P_m on each expert's *own* tokens (eq. 10),
    # from the cache; ``fuse`` then runs a head only where its modality is recovered
    votes: torch.Tensor | None = None
    group: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> Encodings:
        pick = lambda d: {m: v[rows] for m, v in d.items()}  # noqa: E731
        opt = lambda x: None if x is None else x[rows]  # noqa: E731
        return Encodings(pick(self.h), pick(self.cand), pick(self.com), self.h_text[rows],
                         self.text_mask[rows], self.q_sent[rows], opt(self.choices),
                         opt(self.choice_sent), opt(self.key), opt(self.votes),
                         opt(self.group))  # fmt: skip

    def with_cand(self, modality: str, cand: torch.Tensor) -> Encodings:
        return dataclasses.replace(self, cand={**self.cand, modality: cand})

    def with_cand_all(self, cand: dict[str, torch.Tensor]) -> Encodings:
        """The same rows with every modality's H_miss replaced (e.g. by the true features)."""
        return dataclasses.replace(self, cand=dict(cand))


class R2ScP(nn.Module):
    """The whole model: experts (stage I) + CMR, CAP, router, decoder (stage II)."""

    def __init__(self, cfg: R2ScPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.phi = nn.ModuleDict(
            {
                "audio": AudioFrontEnd(cfg.d_audio, cfg.s_audio, d, cfg.max_len, cfg.audio_tokens,
                                       cfg.audio_channels, cfg.dropout)
                if cfg.conv_audio
                else TokenEncoder(cfg.d_audio, d, cfg.max_len, cfg.s_audio, cfg.dropout),
                "visual": TokenEncoder(cfg.d_visual, d, cfg.max_len, cfg.s_visual, cfg.dropout),
                "text": FeatureEncoder(cfg.d_text, d, cfg.max_len, cfg.dropout),
            }
        )  # fmt: skip
        self.experts = nn.ModuleDict(
            {
                m: ModalityExpert(d, cfg.n_heads, cfg.n_layers, cfg.ff_mult, cfg.dropout)
                for m in EXPERTS
            }
        )
        self.heads = nn.ModuleDict({m: ExpertHead(cfg, m) for m in EXPERTS})  # stage I (eq. 10)
        self.grounding = (
            GroundingHeads(d, cfg.n_grounding, {m: cfg.tokens_per_segment(m) for m in MODALITIES},
                           cfg.grounding_attributes, cfg.grounding_visual_attributes)
            if cfg.n_grounding
            else None
        )  # stage I only
        self.cmr = CrossModalRetrieval(cfg.n_retrieve)
        self.cap = nn.ModuleDict({m: ContextAwarePurification(cfg) for m in MODALITIES})
        self.readouts = nn.ModuleDict(
            {
                m: ExpertReadout(d, cfg.d_text, cfg.n_heads, cfg.ff_mult, cfg.dropout,
                                 cfg.readout_hops[m])
                for m in EXPERTS
            }
        )
        # choice 19: binding_hops rounds, each one hop per modality (empty when 0)
        self.binding = nn.ModuleList(
            nn.ModuleDict({m: BindingHop(d, cfg.n_heads, cfg.ff_mult, cfg.dropout)
                           for m in MODALITIES})
            for _ in range(cfg.binding_hops)
        )  # fmt: skip
        self.router = Router(d, cfg.router_hidden, len(EXPERTS))
        self.decoder = (
            ChoiceDecoder(d, d, cfg.dropout)
            if cfg.answer_format == "choices"
            else AnswerDecoder(d, cfg.n_answers, cfg.dropout)
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, FeatureEncoder):
            nn.init.normal_(module.pos, std=0.02)
        elif isinstance(module, BindingHop):  # after its Linear children (apply is post-order)
            nn.init.zeros_(module.other.weight)
        elif isinstance(module, TokenEncoder | AudioFrontEnd):
            for pos in (p for n, p in module.named_parameters(recurse=False) if n.startswith("pos")):
                nn.init.normal_(pos, std=0.02)

    # ---- parameter groups --------------------------------------------------------------------
    def expert_modules(self) -> list[nn.Module]:
        """Stage-I parameters: Phi_m, E_m, the stage-I answer heads (and grounding heads)."""
        return [self.phi, self.experts, self.heads] + ([self.grounding] if self.grounding else [])

    def mixing_modules(self) -> list[nn.Module]:
        """Stage-II parameters: CAP (W_proj, guidance block), readouts, binding hops, router,
        decoder."""
        return [self.cap, self.readouts, self.binding, self.router, self.decoder]

    def init_readouts_from_heads(self) -> None:
        """Warm-start the stage-II readouts from the stage-I heads' readouts."""
        for m in EXPERTS:
            self.readouts[m].load_state_dict(self.heads[m].readout.state_dict())

    # ---- encoders ----------------------------------------------------------------------------
    def encode(
        self, modality: str, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """E_m(Phi_m(x)): raw [B, T, S_m, D_m] (text: [B, Lq, Dt]) -> H_m [B, L_m, d]."""
        return self.experts[modality](self.phi[modality](x), mask)

    def encode_choices(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Candidate answers through the question encoder, pooled: raw tokens [N, Lc, Dt] and
        mask [N, Lc] -> masked mean of E_t(Phi_t(x)) [N, d] (what ChoiceDecoder scores)."""
        h = self.encode("text", x, mask)  # [N, Lc, d]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def encode_common(self, target: str, x_avl: torch.Tensor) -> torch.Tensor:
        """H_com = E_target(Phi_avl(F_avl)): the available modality through the missing
        modality's expert (Algorithm 1 line 14, eq. 6): [B, T, S_avl, D_avl] -> [B, L_avl, d]."""
        return self.experts[target](self.phi[OTHER[target]](x_avl))

    def encode_retrieved(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Retrieved raw candidates [B, n, T, S_m, D_m] -> their encodings [B, n, L_m, d] (eq. 4)."""
        b, n = x.shape[:2]
        h = self.encode(modality, x.flatten(0, 1))  # [B*n, L_m, d]
        return h.view(b, n, *h.shape[1:])

    # ---- stage I -----------------------------------------------------------------------------
    def expert_logits(
        self,
        audio: torch.Tensor,
        visual: torch.Tensor,
        question: torch.Tensor,
        q_mask: torch.Tensor,
        video_of: torch.Tensor | None = None,
        choice_sent: torch.Tensor | None = None,
        grounding: bool = False,
        experts: tuple[str, ...] = EXPERTS,
        question_of: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each expert answers alone (eq. 10): {m: logits [B, n_answers]} for ``m`` in
        ``experts`` (default all three; the others are not computed).

        ``grounding``: also ``{"tags_audio": [V', T, 1, K(1+A)], "tags_visual": [V', T, S_v, K(1+A_v)]}``,
        the grounding heads' logits per video row of ``audio`` / ``visual``.

        ``choice_sent`` [B, C, Dt]: the candidates' raw sentence vectors (multiple choice).

        ``audio`` / ``visual`` are per question [B, T, S, D], or per distinct video [V', T, S, D]
        with ``video_of`` [B] giving each question's row: each video is then encoded once
        however many of its questions are in the batch (same result, less work).

        ``question`` [B, Lq, Dt] / ``q_mask`` [B, Lq] likewise: per question, or per distinct
        question text [Q', Lq, Dt] with ``question_of`` [B]. The text expert, whose tokens are a
        batch's largest input, then encodes each distinct text once (in training its dropout
        mask is shared by the rows that ask the same text).
        """
        q_sent = sentence_vector(question, q_mask)  # [B or Q', Dt]
        if question_of is not None:
            q_sent = q_sent[question_of]  # [B, Dt]
        raw = {"audio": audio, "visual": visual}
        h = {m: self.encode(m, raw[m]) for m in MODALITIES if m in experts}
        tags = {}
        if grounding:
            if self.grounding is None:
                raise ValueError("this model has no grounding heads (model.n_grounding = 0)")
            tags = {f"tags_{m}": self.grounding(m, x) for m, x in h.items()}
        if video_of is not None:
            h = {m: x[video_of] for m, x in h.items()}  # [B, L_m, d]
        if "text" in experts:
            h_text = self.encode("text", question, q_mask)  # [B or Q', Lq, d]
            h["text"] = h_text if question_of is None else h_text[question_of]  # [B, Lq, d]
        if question_of is not None:
            q_mask = q_mask[question_of]  # [B, Lq]
        masks = {"audio": None, "visual": None, "text": q_mask}
        return {m: self.heads[m](h[m], masks[m], q_sent, choice_sent) for m in h} | tags

    # ---- stage II ----------------------------------------------------------------------------
    def recover(
        self, target: str, enc: Encodings, use_cap: bool | None = None, k_purge: int | None = None
    ) -> torch.Tensor:
        """The recovered sequence of ``target``: H_miss (eq. 4), purified by CAP (eq. 9) with
        budget ``k_purge`` (default the configured one)."""
        use_cap = self.cfg.use_cap if use_cap is None else use_cap
        cand = enc.cand[target]  # [B, L, d]
        if not use_cap:
            return cand
        h_pur, _ = self.cap[target](
            cand, enc.h[OTHER[target]], enc.com[target], enc.h_text, enc.text_mask, k_purge,
            enc.key, enc.group,
        )
        return h_pur

    def fuse(
        self,
        enc: Encodings,
        missing: torch.Tensor,
        expert_mask: torch.Tensor | None = None,
        use_cap: bool | None = None,
        k_purge: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-II forward on encodings: -> (logits [B, n_answers], alpha [B, 3]).

        ``k_purge`` overrides CAP's budget for this call (an argument, never module state).

        ``missing`` [B]: 0 complete, 1 audio missing, 2 visual missing. A missing modality's
        sequence is its recovered sequence; with ``complete_mode: append`` complete samples also
        get both recovered sequences appended to their own tokens (docs/model.md).
        """
        cfg = self.cfg
        b = missing.shape[0]
        complete = missing == MISSING_CODES["none"]  # [B]
        append = self.appends_recovery
        use_cap = (cfg.use_cap if use_cap is None else use_cap) and cfg.mixing
        recovered = self.recovered_rows(missing)
        seqs, masks, owns = {}, {}, {}
        for m in MODALITIES:
            is_missing = missing == MISSING_CODES[m]  # [B]
            need = recovered[m]  # rows that use a recovery
            rec = None
            if need.all():
                rec = self.recover(m, enc, use_cap, k_purge)  # [B, L_m, d]
            elif need.any():  # recover only those rows; the others keep a finite placeholder
                rows = need.nonzero().squeeze(1)
                rec = enc.h[m].index_copy(
                    0, rows, self.recover(m, enc.select(rows), use_cap, k_purge)
                )
            own = enc.h[m] if rec is None else torch.where(is_missing[:, None, None], rec, enc.h[m])
            owns[m] = own
            if append and rec is not None:
                seqs[m] = torch.cat([own, rec], 1)  # [B, 2 L_m, d]
                length = own.shape[1]
                masks[m] = torch.cat([torch.ones(b, length, dtype=torch.bool, device=own.device),
                                      complete[:, None].expand(b, length)], 1)  # fmt: skip
            else:
                seqs[m], masks[m] = own, None
        seqs["text"], masks["text"] = enc.h_text, enc.text_mask
        if not cfg.mixing:  # Table 3 "w/o expert mixing training": average the stage-I experts
            return self._average_experts(seqs, masks, enc.q_sent, expert_mask, enc.choice_sent)
        read = {m: self.readouts[m](seqs[m], masks[m], enc.q_sent) for m in EXPERTS}  # [B, d]
        for hop in self.binding:  # choice 19: each modality asks again with the other's answer
            read = read | {m: hop[m](read[m], read[OTHER[m]], seqs[m], masks[m])
                           for m in MODALITIES}  # fmt: skip
        h = torch.stack([read[m] for m in EXPERTS], 1)  # [B, 3, d]
        alpha = self.router(h, expert_mask)  # [B, 3] (eq. 11)
        z = (alpha.unsqueeze(-1) * h).sum(1)  # Z_joint [B, d] (eq. 12)
        if self.cfg.answer_format == "choices":
            logits = self.decoder(z, enc.choices)  # [B, C]
        else:
            logits = self.decoder(z)  # [B, n_answers]
        if cfg.expert_votes:  # + sum_m alpha_m log P_m(y | own or recovered tokens), eq. 10 heads
            logp = self._votes(enc, owns, missing)  # [B, 3, n_answers]
            logits = logits + (alpha.unsqueeze(-1) * logp).sum(1)
        return logits, alpha

    @property
    def appends_recovery(self) -> bool:
        """Whether complete samples get both recovered sequences appended (``complete_mode:
        append``); without expert mixing (Table 3) nothing after the experts is trained: no
        CAP, no append."""
        return self.cfg.recovers_complete and self.cfg.mixing

    def recovered_rows(self, missing: torch.Tensor) -> dict[str, torch.Tensor]:
        """{m: [B] bool}: the rows whose ``Encodings.cand[m]`` :meth:`fuse` reads (m missing,
        or complete with ``complete_mode: append``); the other rows' fills are never read."""
        complete = missing == MISSING_CODES["none"]
        return {m: (missing == MISSING_CODES[m]) | (complete & self.appends_recovery)
                for m in MODALITIES}  # fmt: skip

    def _votes(self, enc: Encodings, owns: dict[str, torch.Tensor],
               missing: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """log P_m [B, 3, n_answers] of the stage-I heads on ``owns[m]`` (own or recovered tokens).

        With ``enc.votes`` (frozen experts: the heads' answers on the own tokens, cached) a head
        runs only on the rows whose modality is recovered; the values are the same to float
        rounding.
        """
        if enc.votes is None:
            return self.heads_log_probs(
                {**owns, "text": enc.h_text}, {"audio": None, "visual": None, "text": enc.text_mask},
                enc.q_sent, enc.choice_sent,
            )  # fmt: skip
        per_expert = []
        for i, m in enumerate(EXPERTS):
            lp = enc.votes[:, i]  # [B, n_answers]
            if m in MODALITIES:
                rows = (missing == MISSING_CODES[m]).nonzero().squeeze(1)
                if len(rows):
                    choice = None if enc.choice_sent is None else enc.choice_sent[rows]
                    live = self.heads[m](owns[m][rows], None, enc.q_sent[rows], choice)
                    lp = lp.index_copy(0, rows, live.log_softmax(-1).to(lp.dtype))
            per_expert.append(lp)
        return torch.stack(per_expert, 1)

    def heads_log_probs(self, seqs, masks, q_sent, choice_sent=None) -> torch.Tensor:
        """Each stage-I head's answer on ``seqs[m]`` (eq. 10): log P_m [B, 3, n_answers]."""
        return torch.stack(
            [self.heads[m](seqs[m], masks[m], q_sent, choice_sent).log_softmax(-1)
             for m in EXPERTS], 1
        )  # fmt: skip

    def _average_experts(self, seqs, masks, q_sent, expert_mask, choice_sent=None):
        logp = self.heads_log_probs(seqs, masks, q_sent, choice_sent)  # [B, 3, n_answers]
        b = logp.shape[0]
        keep = (
            torch.ones(b, len(EXPERTS), device=logp.device)
            if expert_mask is None
            else (~expert_mask).float()
        )
        alpha = keep / keep.sum(1, keepdim=True)  # [B, 3] uniform over kept experts
        probs = (alpha.unsqueeze(-1) * logp.exp()).sum(1)
        return probs.clamp_min(1e-12).log(), alpha
