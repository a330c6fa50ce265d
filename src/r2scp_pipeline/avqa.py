"""MUSIC-AVQA constants shared by every pipeline: answer vocabulary, question templates, types.

The 42-answer vocabulary and the 33 question templates are those of the official benchmark
(Li et al., CVPR 2022, MIT licence). The order of ``ANSWERS`` is the sorted order of the
official ``answers.txt``; ``answer_idx`` everywhere in the project indexes this list.
"""

from __future__ import annotations

ANSWERS: tuple[str, ...] = (
    "accordion", "acoustic_guitar", "bagpipe", "banjo", "bassoon", "cello", "clarinet",
    "congas", "drum", "eight", "electric_bass", "erhu", "five", "flute", "four", "guzheng",
    "indoor", "left", "middle", "more than ten", "nine", "no", "one", "outdoor", "piano",
    "pipa", "right", "saxophone", "seven", "simultaneously", "six", "suona", "ten", "three",
    "trumpet", "tuba", "two", "ukulele", "violin", "xylophone", "yes", "zero",
)  # fmt: skip
ANSWER_TO_IDX: dict[str, int] = {a: i for i, a in enumerate(ANSWERS)}

#: The 22 instrument classes of MUSIC-AVQA (all are answers too).
INSTRUMENTS: tuple[str, ...] = (
    "accordion", "acoustic_guitar", "bagpipe", "banjo", "bassoon", "cello", "clarinet",
    "congas", "drum", "electric_bass", "erhu", "flute", "guzheng", "piano", "pipa",
    "saxophone", "suona", "trumpet", "tuba", "ukulele", "violin", "xylophone",
)  # fmt: skip

#: The question-type modalities of MUSIC-AVQA (the ``modality`` column of ``qa_pairs``), which the
#: accuracy is broken down by. Not the feature modalities (``vocabulary.MODALITIES``).
QUESTION_MODALITIES: tuple[str, ...] = ("Audio", "Visual", "Audio-Visual")

#: The 9 (modality, sub-type) question types, in the order of the official evaluation.
QUESTION_TYPES: tuple[tuple[str, str], ...] = (
    ("Audio", "Counting"),
    ("Audio", "Comparative"),
    ("Visual", "Counting"),
    ("Visual", "Location"),
    ("Audio-Visual", "Existential"),
    ("Audio-Visual", "Counting"),
    ("Audio-Visual", "Location"),
    ("Audio-Visual", "Comparative"),
    ("Audio-Visual", "Temporal"),
)

#: The 33 official templates, ``(modality, subtype, question_content)``, stripped of trailing
#: whitespace. The official files spell one with a full-width question mark (U+FF1F).
TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("Audio", "Comparative", "Is the <Object> louder than the <Object>?"),
    ("Audio", "Comparative", "Is the <Object> more rhythmic than the <Object>?"),
    ("Audio", "Comparative", "Is the <Object> playing longer than the <Object>?"),
    ("Audio", "Counting", "Are there <Object> and <Object> sound?"),
    ("Audio", "Counting", "How many musical instruments were heard throughout the video?"),
    ("Audio", "Counting", "Is there a <Object> sound?"),
    ("Audio-Visual", "Comparative", "Is the <Object> on the <LR> louder than the <Object> on the <LR>?"),
    ("Audio-Visual", "Comparative", "Is the <Object> on the <LR> more rhythmic than the <Object> on the <LR>?"),
    ("Audio-Visual", "Comparative", "Is the instrument on the <LR> louder than the instrument on the <LR>?"),
    ("Audio-Visual", "Comparative", "Is the instrument on the <LR> more rhythmic than the instrument on the <LR>?"),
    ("Audio-Visual", "Counting", "How many instruments are sounding in the video?"),
    ("Audio-Visual", "Counting", "How many instruments in the video did not sound from beginning to end?"),
    ("Audio-Visual", "Counting", "How many sounding <Object> in the video\uff1f"),
    ("Audio-Visual", "Counting", "How many types of musical instruments sound in the video?"),
    ("Audio-Visual", "Existential", "Is the <Object> in the video always playing?"),
    ("Audio-Visual", "Existential", "Is there a voiceover?"),
    ("Audio-Visual", "Existential", "Is this sound from the instrument in the video?"),
    ("Audio-Visual", "Location", "Is the <FL> sound coming from the <LR> instrument?"),
    ("Audio-Visual", "Location", "What is the <LR> instrument of the <FL> sounding instrument?"),
    ("Audio-Visual", "Location", "Where is the <LL> instrument?"),
    ("Audio-Visual", "Location", "Which is the musical instrument that sounds at the same time as the <Object>?"),
    ("Audio-Visual", "Temporal", "What is the <TH> instrument that comes in?"),
    ("Audio-Visual", "Temporal", "Where is the <FL> sounding instrument?"),
    ("Audio-Visual", "Temporal", "Which <Object> makes the sound <FL>?"),
    ("Audio-Visual", "Temporal", "Which instrument makes sounds <BA> the <Object>?"),
    ("Visual", "Counting", "Are there <Object> and <Object> instruments in the video?"),
    ("Visual", "Counting", "How many <Object> are in the entire video?"),
    ("Visual", "Counting", "How many types of musical instruments appeared in the entire video?"),
    ("Visual", "Counting", "Is there a <Object> in the entire video?"),
    ("Visual", "Location", "What is the instrument on the <LR> of <Object>?"),
    ("Visual", "Location", "What kind of instrument is the <LRer> instrument?"),
    ("Visual", "Location", "What kind of musical instrument is it?"),
    ("Visual", "Location", "Where is the performance?"),
)  # fmt: skip

#: The paper's five Table-1 columns: (column, list of (modality, subtype) pooled into it).
#: The paper reports Music-AVQA's *Audio-Visual* sub-types; we pool by sub-type name.
PAPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Exist", "Existential"),
    ("Localis", "Location"),
    ("Count", "Counting"),
    ("Comp", "Comparative"),
    ("Temp", "Temporal"),
)

#: How the paper's five Audio-Visual columns pool questions (``evaluate.paper_columns``):
#: the five Audio-Visual sub-types (the paper's Table 1) or sub-types pooled over modalities.
PAPER_POOLINGS: tuple[str, ...] = ("audio_visual", "all_modalities")
