"""Character cards: V2/V3 JSON and PNG, macros, appearance, and hostile input."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import pytest
from PIL import Image

from persona.cards import (
    CARDS_DIR,
    CardError,
    default_cards,
    load_card,
    parse_card,
    write_png_card,
)
from pipelines.conditioning import Character


def _v2(**data: object) -> bytes:
    return json.dumps(
        {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Ada", **data}}
    ).encode()


def _png(chunks: list[tuple[bytes, bytes]] = ()) -> bytes:  # type: ignore[assignment]
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    png = buffer.getvalue()
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks
    )
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + extra + png[iend:]


def test_shipped_cards_load_with_distinct_appearances() -> None:
    cards = default_cards()
    assert len(cards) >= 2
    assert len({c.appearance for c in cards}) == len(cards)
    assert {c.spec for c in cards} == {"chara_card_v2", "chara_card_v3"}
    for card in cards:
        assert isinstance(card.to_character(), Character)
        assert "{{" not in card.greeting("Sam")


def test_macros_and_greeting() -> None:
    card = parse_card(_v2(first_mes="Hi {{user}}, I am {{char}}. <USER>!"))
    assert card.greeting("Sam") == "Hi Sam, I am Ada. Sam!"


def test_v3_json_and_appearance_extension() -> None:
    blob = json.dumps(
        {
            "spec": "chara_card_v3",
            "spec_version": "3.0",
            "data": {
                "name": "Bo",
                "extensions": {"persona/appearance": {"hair": "#ff0000", "hair_style": "bun"}},
            },
        }
    ).encode()
    card = parse_card(blob)
    assert (card.spec, card.appearance.hair, card.appearance.hair_style) == (
        "chara_card_v3",
        "#ff0000",
        "bun",
    )


def test_png_round_trip_is_readable_by_card_tools() -> None:
    card = parse_card(_v2(description="{{char}} likes tea"))
    png = write_png_card(card, _png())
    loaded = parse_card(png)
    assert loaded.name == "Ada" and loaded.data.description == "{{char}} likes tea"
    # An independent reader (Pillow) sees a valid image with both standard chunks.
    image = Image.open(io.BytesIO(png))
    image.load()
    v2 = json.loads(base64.b64decode(image.text["chara"]))
    v3 = json.loads(base64.b64decode(image.text["ccv3"]))
    assert (v2["spec"], v3["spec"]) == ("chara_card_v2", "chara_card_v3")
    assert v2["data"]["name"] == v3["data"]["name"] == "Ada"


def test_shipped_png_card_carries_both_chunks() -> None:
    blob = (CARDS_DIR / "mira.png").read_bytes()
    assert b"tEXtchara\x00" in blob and b"tEXtccv3\x00" in blob
    assert load_card(blob).name == "Mira"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (json.dumps({"spec": "chara_card_v9", "data": {}}).encode(), "unsupported card spec"),
        (json.dumps({"spec": "chara_card_v2", "data": "x"}).encode(), "needs a 'data' object"),
        (_v2(name=""), "invalid card field 'name'"),
        (_v2(description="x" * 30_000), "invalid card field 'description'"),
        (_v2(extensions={"persona/appearance": {"skin": "red; drop table"}}), "skin"),
        (_v2(extensions={"persona/appearance": {"evil": 1}}), "evil"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b"x" * (5 * 2**20 + 1), "limit is 5 MB"),
        (_png(), "carries no character card"),
        (_png([(b"tEXt", b"chara\x00!!!not base64 json!!!")]), "is not base64"),
        (_png([(b"tEXt", b"chara\x00" + base64.b64encode(b"{oops"))]), "not valid JSON"),
        (_png()[:40], "truncated"),
    ],
)
def test_bad_cards_get_clear_errors(blob: bytes, message: str) -> None:
    with pytest.raises(CardError, match=message):
        parse_card(blob)


def test_missing_file_is_a_card_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CardError, match="cannot read card file"):
        load_card(tmp_path / "nope.json")
