"""A look derived from a card's prose: phrasings, colours, and cards without the extension."""

from __future__ import annotations

import json
import math

import pytest

from persona.appearance import appearance_from_text, resolve_colour
from persona.cards import parse_card, write_png_card
from pipelines.conditioning import Appearance
from tests.card_files import png_with_text_chunks

PINK, AMBER, BLACK = (resolve_colour(name) for name in ("pink", "amber", "black"))
PROSE = (
    "{{char}} is an art student who lives above a bakery. She has long pink hair and warm amber "
    "eyes. She wears a black sundress and battered white sneakers."
)


def _near(hex_colour: str, name: str, part: str = "clothes") -> bool:
    expected = resolve_colour(name, part)  # type: ignore[arg-type]
    assert expected is not None, name
    rgb = [[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in (hex_colour, expected)]
    return math.dist(*rgb) <= 60


@pytest.mark.parametrize(
    ("text", "field", "colour"),
    [
        ("She has long pink hair.", "hair", "pink"),
        ("Her hair is a deep crimson, and she laughs a lot.", "hair", "crimson"),
        ("hair: silver", "hair", "silver"),
        ("Her eyes are the colour of amber.", "eyes", "amber"),
        ("eyes the color of amber", "eyes", "amber"),
        ("a tall man with green eyes", "eyes", "green"),
        ("Her green eyes light up when she laughs.", "eyes", "green"),
        ("wearing a red hoodie and blue jeans", "top", "red"),
        ("wearing a red hoodie and blue jeans", "bottom", "blue"),
        ("brown leather boots", "shoes", "brown"),
        ("[Aiko: hair: long, pink; eyes: amber; clothes: black sundress]", "eyes", "amber"),
        ('Hair("long" + "pink")\nEyes("amber")', "hair", "pink"),
        ("Eye color: emerald green", "eyes", "emerald green"),
        ("1girl, pink hair, long hair, amber eyes, black dress", "bottom", "black"),
        ("a silver-haired, blue-eyed elf", "eyes", "blue"),
        ("her jet-black hair", "hair", "black"),
        ("heterochromatic eyes, one violet and one gold", "eyes", "violet"),
        ("a petite blonde with a shy smile", "hair", "blonde"),
        ("a purple waistcoat with gold buttons", "accent", "gold"),
    ],
)
def test_phrasings_set_fields(text: str, field: str, colour: str) -> None:
    derived = appearance_from_text(text)
    assert field in derived.found
    part = field if field in ("hair", "eyes", "skin") else "clothes"
    assert _near(getattr(derived.appearance, field), colour, part)


@pytest.mark.parametrize(
    ("text", "style"),
    [
        ("She has long pink hair.", "long"),
        ("short, curly black hair", "curly"),
        ("Her black hair is cut in a neat bob.", "bob"),
        ("1girl, twintails, blonde hair", "ponytail"),
        ("pigtails", "ponytail"),
        ("her grey hair pinned in a tight bun", "bun"),
        ("a half-orc with a shaved head", "bald"),
        ("short spiky orange hair", "spiky"),
        ("messy, shoulder-length auburn hair", "long"),
        ("long wavy brown hair usually pulled into a messy ponytail", "ponytail"),
        ('Hairstyle("Spiky")', "spiky"),
    ],
)
def test_hair_styles(text: str, style: str) -> None:
    derived = appearance_from_text(text)
    assert (derived.appearance.hair_style, "hair_style" in derived.found) == (style, True)


def test_skin_words_mean_skin_tones() -> None:
    pale = appearance_from_text("She has pale skin.").appearance.skin
    dark = appearance_from_text("He is dark-skinned.").appearance.skin
    tanned = appearance_from_text("[body: tanned skin, short hair]").appearance.skin
    assert len({pale, dark, tanned, Appearance().skin}) == 4
    assert sum(_rgb(pale)) > sum(_rgb(tanned)) > sum(_rgb(dark))
    assert "skin" not in appearance_from_text("She has freckled skin.").found


def _rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]


def test_found_maps_fields_to_their_phrases_and_describes_them() -> None:
    derived = appearance_from_text(PROSE)
    assert derived.found == {
        "hair": "long pink hair",
        "hair_style": "long pink hair",
        "eyes": "amber eyes",
        "top": "a black sundress",
        "bottom": "a black sundress",
        "shoes": "white sneakers",
    }
    assert derived.appearance.description == (
        "a person with long pink hair and amber eyes, wearing a black sundress and white sneakers"
    )
    assert derived.appearance.skin == Appearance().skin  # not mentioned: the default


def test_first_mention_wins_over_a_second_person() -> None:
    derived = appearance_from_text(
        "Mei has black hair in a bob and dark brown eyes. Her brother Kenji has bleached blonde "
        "hair, long and spiky, and green eyes."
    )
    assert _near(derived.appearance.hair, "black", "hair")
    assert _near(derived.appearance.eyes, "dark brown", "eyes")
    assert derived.appearance.hair_style == "bob"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Marcus runs a coffee shop. He keeps a red notebook of bad poetry behind the counter, and "
        "the walls are painted a soft green.",
        "Her eyes light up whenever anyone mentions dragons. She eats a cinnamon bun.",
        "Felix sees the world through rose-tinted glasses and is green with envy.",
        "Bob is a friendly neighbour. She curls up with a book.",
    ],
)
def test_text_without_an_appearance_finds_nothing(text: str) -> None:
    derived = appearance_from_text(text)
    assert (derived.found, derived.appearance) == ({}, Appearance())


def test_colour_names_and_modifiers() -> None:
    assert resolve_colour("black") != "#000000"  # reads as a flat hole on the cartoon
    assert resolve_colour("nonsense") is None
    pale, base, dark = (resolve_colour(n) for n in ("pastel pink", "pink", "dark pink"))
    assert sum(_rgb(pale)) > sum(_rgb(base)) > sum(_rgb(dark))  # type: ignore[arg-type]
    assert resolve_colour("dark blue") == "#00008b"  # a CSS name before a modifier
    assert resolve_colour("honey-blonde") == resolve_colour("honey blonde")
    assert resolve_colour("dark", "hair") != resolve_colour("dark", "skin")
    assert resolve_colour("dark") is None  # a "dark jacket" names no colour of its own


def test_a_huge_description_is_read_quickly() -> None:
    import time

    text = (PROSE + " ") * 200
    start = time.perf_counter()
    appearance_from_text(text)
    assert time.perf_counter() - start < 0.5


# -- cards ------------------------------------------------------------------------------------


def _card(spec: str = "chara_card_v2", description: str = PROSE, **data: object) -> bytes:
    version = "3.0" if spec == "chara_card_v3" else "2.0"
    card = {"spec": spec, "spec_version": version, "data": {"name": "Aiko", **data}}
    card["data"]["description"] = description  # type: ignore[index]
    return json.dumps(card).encode()


def _looks_like_prose(appearance: Appearance) -> None:
    assert _near(appearance.hair, "pink", "hair") and appearance.hair_style == "long"
    assert (appearance.eyes, appearance.top, appearance.bottom) == (AMBER, BLACK, BLACK)


def test_card_without_extension_gets_the_derived_look() -> None:
    card = parse_card(_card())
    assert card.appearance_from == "text"
    _looks_like_prose(card.appearance)
    assert card.appearance.description.startswith("a person with long pink hair")


def test_personality_and_scenario_are_read_after_the_description() -> None:
    card = parse_card(
        _card(
            description="{{char}} is a quiet librarian.",
            personality="shy; hair: silver",
            scenario="She meets {{user}}, who has red hair.",
        )
    )
    assert card.appearance_from == "text"
    assert _near(card.appearance.hair, "silver", "hair")


def test_card_with_nothing_to_read_gets_the_default() -> None:
    card = parse_card(_card(description="{{char}} is the ship's computer."))
    assert (card.appearance_from, card.appearance) == ("default", Appearance())


def test_card_with_the_extension_is_unchanged() -> None:
    extension = {"hair": "#ff0000", "hair_style": "bun"}
    card = parse_card(_card(extensions={"persona/appearance": extension}))
    assert card.appearance_from == "card"
    assert card.appearance == Appearance(**extension)  # the prose's pink hair is ignored
    empty = parse_card(_card(extensions={"persona/appearance": {}}))
    assert (empty.appearance_from, empty.appearance) == ("card", Appearance())


def test_v2_png_with_prose_only_loads_the_derived_look() -> None:
    card = parse_card(png_with_text_chunks({b"chara": _card()}))
    assert card.appearance_from == "text"
    _looks_like_prose(card.appearance)


def test_v3_png_with_prose_only_loads_the_derived_look() -> None:
    # Tools write `ccv3` together with a `chara` fallback; the V3 chunk is the one read.
    other = _card(description="She has short green hair and grey eyes.")
    card = parse_card(png_with_text_chunks({b"chara": other, b"ccv3": _card("chara_card_v3")}))
    assert (card.spec, card.appearance_from) == ("chara_card_v3", "text")
    _looks_like_prose(card.appearance)


def test_derived_look_is_written_out_as_the_extension() -> None:
    card = parse_card(_card())
    assert card.to_json()["data"]["extensions"]["persona/appearance"] == (  # type: ignore[index]
        card.appearance.model_dump()
    )
    reloaded = parse_card(write_png_card(card, png_with_text_chunks({})))
    assert (reloaded.appearance, reloaded.appearance_from) == (card.appearance, "card")
