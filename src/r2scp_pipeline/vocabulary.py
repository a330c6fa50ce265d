"""The project's shared words, defined once: modalities, experts, retrieval directions, missing codes.

Every module imports these from here; ``tests/test_vocabulary.py`` fails when another module in
``src`` defines one of these names or values again.

* A **modality** here is a *feature stream* of a video: ``audio`` or ``visual``. Either may be
  missing and recovered by retrieval. (The *question-type* modalities of MUSIC-AVQA, "Audio",
  "Visual", "Audio-Visual", are another word: ``avqa.QUESTION_MODALITIES``.)
* The **experts** (eqs. 10-12) are the two modalities plus the question ``text``, in router order.
* A **direction** (``neighbors.direction``) names a retrieval: query modality -> value modality.
  ``v2a`` queries with the visual stream and recovers audio; ``a2v`` the reverse.
* A **missing code** marks per sample what is missing: 0 nothing, 1 audio, 2 visual.
* An **evaluation setting** (``evaluate.settings``, the ``setting`` column of the results) drops
  one modality from the test videos, or nothing (``complete``). Training's validation settings and
  ``predict --missing`` use the keys of ``MISSING_CODES`` (``none``, ``audio``, ``visual``).
"""

from __future__ import annotations

from typing import Literal

#: The feature modalities, each of which can be missing and recovered by retrieval.
MODALITIES: tuple[str, ...] = ("audio", "visual")
#: The experts of the mixture, in the router's order (``alpha[:, i]`` weighs ``EXPERTS[i]``).
EXPERTS: tuple[str, ...] = ("audio", "visual", "text")
#: The modality that is present when ``m`` is missing (the retrieval query side).
OTHER: dict[str, str] = {"audio": "visual", "visual": "audio"}
#: ``neighbors.direction`` -> (query modality, recovered modality).
DIRECTIONS: dict[str, tuple[str, str]] = {"v2a": ("visual", "audio"), "a2v": ("audio", "visual")}
#: The direction whose retrieved *values* are the given (missing) modality.
DIRECTION_FOR_MISSING: dict[str, str] = {"audio": "v2a", "visual": "a2v"}
#: Integer code of ``missing`` per sample, as the model and the training loops read it.
MISSING_CODES: dict[str, int] = {"none": 0, "audio": 1, "visual": 2}
#: The keys of ``MISSING_CODES``, as a type.
Missing = Literal["none", "audio", "visual"]
#: Evaluation setting -> the modality every affected test video misses (None: nothing dropped).
SETTINGS: dict[str, str | None] = {
    "audio_missing": "audio",
    "visual_missing": "visual",
    "complete": None,
}
