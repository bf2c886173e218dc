"""The DSR prompt grammar: the official 120 prompts, both phrasings, relations, errors."""

from __future__ import annotations

import csv

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import OFFICIAL_CSV as OFFICIAL
from spatialalign.core.errors import SpatialAlignError
from spatialalign.prompts import (
    DSRPrompt,
    format_prompt,
    parse_prompt,
    parse_prompts,
    parse_relation,
)

_WORD = {"left": "L", "right": "R", "top": "T", "bottom": "B"}


def official_rows() -> list[dict[str, str]]:
    with OFFICIAL.open(newline="") as f:
        return list(csv.DictReader(f))


def _relation_of_phrase(phrase: str) -> str:
    # independent of the grammar: the official phrases are "on the X of" / "to the X of"
    words = phrase.split()
    assert len(words) == 4 and words[1] == "the" and words[3] == "of", phrase
    return _WORD[words[2]]


def test_official_rows_parse_and_agree_with_their_columns() -> None:
    rows = official_rows()
    assert len(rows) == 120
    for row in rows:
        p = parse_prompt(row["prompt"])
        assert p.scene == row["scene"]
        assert p.animal == row["animal"]
        assert p.object == row["object"]
        assert p.initial == _relation_of_phrase(row["initial_SR"])
        assert p.final == _relation_of_phrase(row["final_SR"])
        assert p.dsr_type == row["type"]
        # the verb is the word right after "then the {animal}"
        tail = row["prompt"].split(", then the ", 1)[1].split()
        assert tail[0] == row["animal"]
        assert p.verb == tail[1]
        assert p.text == row["prompt"]


def test_official_rows_format_back_to_the_same_text() -> None:
    for row in official_rows():
        assert format_prompt(parse_prompt(row["prompt"])) == row["prompt"]


def test_official_verbs_are_varied() -> None:
    verbs = {parse_prompt(r["prompt"]).verb for r in official_rows()}
    assert {"jumps", "hops", "pecks", "waddles", "crawls", "flaps"} <= verbs


def test_from_to_form() -> None:
    p = parse_prompt(
        "In a quiet park, a fox sprints from the left of a chair to the right of the chair."
    )
    assert (p.scene, p.animal, p.object, p.verb, p.initial, p.final) == (
        "In a quiet park",
        "fox",
        "chair",
        "sprints",
        "L",
        "R",
    )
    q = parse_prompt("a fox sprints from the top of a chair to the left of the chair")
    assert (q.scene, q.initial, q.final) == ("", "T", "L")


def test_case_whitespace_articles_and_multiword_names() -> None:
    text = (
        "  IN A Garden, by the pond ,  An  Old  Grey Tortoise IS ON THE TOP OF an upturned "
        "flower pot,\tthen the old grey tortoise slowly crawls to the BOTTOM of the upturned "
        "flower pot  "
    )
    p = parse_prompt(text)
    assert p.scene == "IN A Garden, by the pond"
    assert p.animal == "old grey tortoise"
    assert p.object == "upturned flower pot"
    assert p.verb == "slowly crawls"
    assert (p.initial, p.final) == ("T", "B")


def test_scene_with_commas_and_no_scene() -> None:
    p = parse_prompt(
        "At dusk, near a lake, a cat is on the right of a box, then the cat paces to the left of the box."
    )
    assert p.scene == "At dusk, near a lake"
    assert (p.animal, p.object, p.dsr_type) == ("cat", "box", "RL")
    q = parse_prompt("A cat is on the right of a box, then the cat paces to the left of the box.")
    assert q.scene == "" and q.dsr_type == "RL"


def test_multiword_animal_in_from_to_form() -> None:
    p = parse_prompt(
        "a red fox quickly runs from the left of a tree stump to the top of the tree stump"
    )
    assert (p.animal, p.verb, p.object) == ("red fox", "quickly runs", "tree stump")


@pytest.mark.parametrize(
    ("text", "initial", "final"),
    [
        ("a cat is above a box, then the cat jumps to the left of the box.", "T", "L"),
        ("a cat is below a box, then the cat jumps to the right of the box.", "B", "R"),
        ("a cat is on top of a box, then the cat jumps under the box.", "T", "B"),
        (
            "a cat is on the left side of a box, then the cat jumps onto the top of the box.",
            "L",
            "T",
        ),
        ("a cat is on the left of a box and then the cat jumps beneath the box.", "L", "B"),
        ("a cat runs from above a box to the right of the box.", "T", "R"),
        ("a cat is left of a box. Then the cat jumps right of the box", "L", "R"),
        ("a cat runs from left of a box to below the box", "L", "B"),
    ],
)
def test_relation_phrasings(text: str, initial: str, final: str) -> None:
    p = parse_prompt(text)
    assert (p.initial, p.final) == (initial, final)
    assert (p.animal, p.object) == ("cat", "box")


@pytest.mark.parametrize(
    "text",
    [
        "a cat is next to a box, then the cat jumps to the top of the box.",
        "a cat is on the left of a box, then the dog jumps to the top of the box.",
        "a cat is on the left of a box, then the cat jumps to the top of the crate.",
        "a cat is over a box, then the cat jumps to the left of the box.",
        "a cat is on the left of a box, then the cat jumps to the middle of the box.",
        "a cat jumps around a box.",
        "",
    ],
)
def test_rejects_non_dsr_prompts(text: str) -> None:
    with pytest.raises(SpatialAlignError, match="not a DSR prompt"):
        parse_prompt(text)


def test_parse_prompts_lists_every_bad_prompt_in_one_error() -> None:
    good = "a cat is on the left of a box, then the cat jumps to the top of the box."
    texts = [good, "a cat sits.", good, "nonsense", None, good]
    with pytest.raises(SpatialAlignError) as err:
        parse_prompts(texts)  # type: ignore[arg-type]
    msg = str(err.value)
    assert "3 prompt(s)" in msg
    assert "[1] 'a cat sits.'" in msg and "[3] 'nonsense'" in msg and "[4] None" in msg
    assert "[0]" not in msg and "[2]" not in msg and "\n" not in msg
    assert len(parse_prompts([good, good])) == 2


def test_parse_relation() -> None:
    assert parse_relation("on the top of") == "T"
    assert parse_relation("to the left of") == "L"
    assert parse_relation("right") == "R"
    assert parse_relation("b") == "B"
    assert parse_relation("below") == "B"
    with pytest.raises(SpatialAlignError):
        parse_relation("next to")


@pytest.mark.parametrize("form", ["then", "from-to"])
def test_format_parse_round_trip(form: str) -> None:
    for scene in ("", "In a sunny kitchen, by the window"):
        for initial in "LRTB":
            for final in "LRTB":
                p = DSRPrompt(
                    animal="guinea pig",
                    object="old basket",
                    initial=initial,
                    final=final,
                    scene=scene,
                    verb="scurries",
                )
                text = format_prompt(p, form=form)
                q = parse_prompt(text)
                assert q == DSRPrompt(**{**p.to_dict(), "text": text})


def test_format_articles_and_unknown_form() -> None:
    p = DSRPrompt(animal="owl", object="armchair", initial="L", final="R", verb="flies")
    assert format_prompt(p) == (
        "An owl is on the left of an armchair, then the owl flies to the right of the armchair."
    )
    with pytest.raises(SpatialAlignError, match="form"):
        format_prompt(p, form="sideways")


# --- property test: format -> parse is the identity on arbitrary names and scenes ----------

_KEYWORDS = {
    "a", "an", "the", "is", "on", "at", "to", "onto", "from", "then", "and", "of", "side",
    "left", "right", "top", "bottom", "above", "below", "beneath", "under", "underneath",
}  # fmt: skip
_word = st.from_regex(r"[a-z][a-z'-]{0,7}", fullmatch=True).filter(
    lambda w: w not in _KEYWORDS and not w.endswith("ly")
)
_words = st.lists(_word, min_size=1, max_size=3).map(" ".join)
# scenes: any printable text, commas, periods and relation words included
_scene = st.text(alphabet="abcdefghij ABC,.'-leftopbm", max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    animal=_words,
    obj=_words,
    verb=_words,
    scene=_scene,
    initial=st.sampled_from("LRTB"),
    final=st.sampled_from("LRTB"),
    form=st.sampled_from(["then", "from-to"]),
)
def test_round_trip_property(
    animal: str, obj: str, verb: str, scene: str, initial: str, final: str, form: str
) -> None:
    if form == "from-to":
        verb = verb.split()[0]  # the from-to form has one-word verbs
    scene = " ".join(scene.split())
    p = DSRPrompt(animal, obj, initial, final, scene=scene, verb=verb)
    text = format_prompt(p, form=form)
    q = parse_prompt(text)
    assert q == DSRPrompt(**{**p.to_dict(), "text": text})
