"""The DSR prompt grammar: parse prompt text into a :class:`DSRPrompt` and format it back.

Two phrasings are understood (case-insensitive, any whitespace, scene and final period
optional, article ``a``/``an``/``the`` on the first mention):

* ``then`` (the paper's): "{scene}, a {animal} is on the {rel} of a {object}, then the
  {animal} {verb} to the {rel} of the {object}."
* ``from-to``: "{scene}, a {animal} {verb} from the {rel} of a {object} to the {rel} of
  the {object}."

A relation is written "[on|to|from] the left/right/top/bottom of" (the leading preposition,
the ``the`` and a trailing ``side`` are optional: "on top of", "left of", "to the left side
of"), or with one of the unambiguous
prepositions ``above`` (top) and ``below``/``beneath``/``under``/``underneath`` (bottom).
Words such as "over", "beside" or "next to" are rejected: they do not name one relation.
The second mention of the animal and the object must repeat the first one, which is what
lets animals, objects and scenes span several words (scenes may contain commas). The
from-to form mentions the animal once, so there its verb is one word (plus an optional
"-ly" adverb: "quickly runs", "runs quickly") and every word before it names the animal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from spatialalign.core.dsr.model import RELATIONS, DSRPrompt
from spatialalign.core.errors import SpatialAlignError

FORMS: tuple[str, ...] = ("then", "from-to")

# word (as written in a prompt) -> relation letter
RELATION_WORDS: dict[str, str] = {
    "left": "L",
    "right": "R",
    "top": "T",
    "bottom": "B",
    "above": "T",
    "below": "B",
    "beneath": "B",
    "under": "B",
    "underneath": "B",
}

_WORD_REL = r"(?:the\s+)?(?P<{g}>left|right|top|bottom)(?:\s+side)?\s+of"
_PREP_REL = r"(?P<{g}p>above|below|beneath|underneath|under)"
_ART = r"(?:an?|the)"
_NAME = r"[^,.]+?"  # animal / object: any words without commas or periods
# the from-to verb: one word, with an optional "-ly" adverb before or after it; words in
# "fly" ("butterfly") and a few "-ly" nouns are not adverbs, so "a monarch butterfly flutters"
_ADVERB = r"(?!(?:[^\s,.]*fly|lily|jelly|belly|family|holly|bully)\b)[^\s,.]+ly"
_FT_VERB = rf"(?:{_ADVERB}\s+)?[^\s,.]+(?:\s+{_ADVERB})?"


def _rel(group: str, lead: str) -> str:
    """A relation phrase, optionally led by one of ``lead`` ("on|to", "from", ...)."""
    word = _WORD_REL.format(g=group)
    prep = _PREP_REL.format(g=group)
    return rf"(?:(?:{lead})\s+)?(?:{word}|{prep})"


_HEAD = rf"^(?:(?P<scene>.*?)\s*,\s*)?{_ART}\s+(?P<animal>{_NAME})\s+"

_THEN_RE = re.compile(
    _HEAD
    + rf"is\s+{_rel('init', 'on|at|to')}\s+{_ART}\s+(?P<object>{_NAME})"
    + r"\s*[,;.]?\s*(?:and\s+)?then\s+the\s+(?P=animal)\s+(?P<verb>[^,.]+?)\s+"
    + rf"{_rel('final', 'to|onto|on')}\s+the\s+(?P=object)\s*\.?$",
    re.IGNORECASE,
)

_FROM_TO_RE = re.compile(
    _HEAD
    + rf"(?P<verb>{_FT_VERB})\s+"
    + rf"{_rel('init', 'from')}\s+{_ART}\s+(?P<object>{_NAME})\s+"
    + rf"{_rel('final', 'to|onto')}\s+the\s+(?P=object)\s*\.?$",
    re.IGNORECASE,
)

# the relation phrases of the official CSV columns, e.g. "on the top of" / "to the left of"
_SR_RE = re.compile(
    r"^\s*(?:(?:on|to|from|at)\s+)?(?:the\s+)?(left|right|top|bottom|above|below|beneath|"
    r"underneath|under)(?:\s+side)?(?:\s+of)?\s*$",
    re.IGNORECASE,
)


def normalize_space(text: str) -> str:
    """Collapses every run of whitespace to one space and strips the ends."""
    return " ".join(text.split())


def _letter(match: re.Match[str], group: str) -> str:
    word = match.group(group) or match.group(group + "p")
    return RELATION_WORDS[word.lower()]


def try_parse_prompt(text: str) -> DSRPrompt | None:
    """Parses one prompt, or returns None when it follows neither phrasing."""
    clean = normalize_space(text)
    for regex in (_THEN_RE, _FROM_TO_RE):
        m = regex.match(clean)
        if m is None:
            continue
        scene = (m.group("scene") or "").strip()
        return DSRPrompt(
            animal=m.group("animal").lower(),
            object=m.group("object").lower(),
            initial=_letter(m, "init"),
            final=_letter(m, "final"),
            scene=scene,
            verb=m.group("verb").lower(),
            text=text.strip(),
        )
    return None


def parse_prompt(text: str) -> DSRPrompt:
    """Parses one DSR prompt; animal, object and verb come back lower-case, scene as written.

    Raises :class:`SpatialAlignError` when the text follows neither phrasing.
    """
    if not isinstance(text, str):
        raise SpatialAlignError(f"not a DSR prompt (expected text, got {type(text).__name__})")
    parsed = try_parse_prompt(text)
    if parsed is None:
        raise SpatialAlignError(f"not a DSR prompt: {text!r}")
    return parsed


def parse_prompts(texts: Iterable[str]) -> list[DSRPrompt]:
    """Parses many prompts; raises ONE :class:`SpatialAlignError` listing every bad one."""
    parsed: list[DSRPrompt] = []
    bad: list[tuple[int, object]] = []
    for i, text in enumerate(texts):
        p = try_parse_prompt(text) if isinstance(text, str) else None
        if p is None:
            bad.append((i, text))
        else:
            parsed.append(p)
    if bad:
        raise SpatialAlignError(unparseable_message(bad))
    return parsed


def unparseable_message(bad: list[tuple[int | str, object]], where: str = "") -> str:
    """One error line naming every unparseable prompt as ``[index] 'text'``."""
    prefix = f"{where}: " if where else ""
    listing = "; ".join(f"[{i}] {t!r}" for i, t in bad)
    return f"{prefix}{len(bad)} prompt(s) do not follow the DSR grammar: {listing}"


def parse_relation(phrase: str) -> str:
    """Relation letter of a phrase such as "on the top of", "to the left of", "left", "L"."""
    if not isinstance(phrase, str):
        raise SpatialAlignError(f"not a relation: {phrase!r}")
    s = phrase.strip()
    if s.upper() in RELATIONS:
        return s.upper()
    m = _SR_RE.match(s)
    if m is None:
        raise SpatialAlignError(f"not a relation: {phrase!r}")
    return RELATION_WORDS[m.group(1).lower()]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def format_prompt(p: DSRPrompt, form: str = "then") -> str:
    """Writes ``p`` as prompt text in one of :data:`FORMS`; :func:`parse_prompt` inverts it."""
    if form not in FORMS:
        raise SpatialAlignError(f"unknown prompt form {form!r} (expected one of {FORMS})")
    init, final = RELATIONS[p.initial], RELATIONS[p.final]
    verb = p.verb or "moves"
    a_animal = f"{_article(p.animal)} {p.animal}"
    a_object = f"{_article(p.object)} {p.object}"
    if form == "then":
        body = (
            f"{a_animal} is on the {init} of {a_object}, "
            f"then the {p.animal} {verb} to the {final} of the {p.object}."
        )
    else:
        body = f"{a_animal} {verb} from the {init} of {a_object} to the {final} of the {p.object}."
    if p.scene:
        return f"{p.scene}, {body}"
    return body[0].upper() + body[1:]


def initial_phrase(letter: str) -> str:
    """The official CSV's ``initial_SR`` phrase, e.g. "on the top of"."""
    return f"on the {RELATIONS[letter]} of"


def final_phrase(letter: str) -> str:
    """The official CSV's ``final_SR`` phrase, e.g. "to the left of"."""
    return f"to the {RELATIONS[letter]} of"
