"""Character cards: Character Card V2/V3 JSON, and PNGs carrying them in a tEXt chunk.

Reads `chara_card_v2` / `chara_card_v3` JSON (and legacy flat V1 JSON) from a path or bytes,
and PNGs with a `ccv3` or `chara` tEXt chunk (base64 JSON), walking the PNG's chunks directly
so pixels are never decoded (a hostile image cannot exhaust memory). Applies the `{{char}}` and
`{{user}}` macros. The renderers' appearance lives under `data.extensions["persona/appearance"]`
and is validated into `pipelines.conditioning.Appearance`; a card without it (most cards from
other tools) gets a look derived from its prose (`persona.appearance`). Its voice lives under
`data.extensions["persona/voice"]` (`persona.voice.tts.VoiceSettings`). Anything malformed, oversized or
hostile raises `CardError` with a message fit to show a user; nothing is half-loaded.
Knows nothing about conversations or prompts (see `conversation.py`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
import unicodedata
import zlib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from persona.appearance import appearance_from_text
from persona.voice.tts import VOICE_KEY, VoiceSettings
from pipelines.conditioning import NAME_MAX_CHARS, Appearance, Character

MAX_CARD_BYTES = 5 * 2**20
MAX_FIELD_CHARS = 20_000
APPEARANCE_KEY = "persona/appearance"
CARDS_DIR = Path(__file__).resolve().parents[1] / "assets" / "characters"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CARD_CHUNK_KEYWORDS = (b"ccv3", b"chara")  # V3 first: tools write both, V3 is richer
_MACROS = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(BOT|USER)>", re.IGNORECASE)


_Model = TypeVar("_Model", bound=BaseModel)
AppearanceSource = Literal["card", "text", "default", "page"]
"""Where a card's appearance came from: its `persona/appearance` extension, its prose (at least
one field was read from it), nowhere (the default figure), or the visitor's own adjustments."""


class CardError(ValueError):
    """A card that cannot be used; the message says why, in words a user can act on."""


class CardData(BaseModel):
    """The fields of a card's `data` Persona uses; other fields are kept but ignored."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=NAME_MAX_CHARS)
    description: str = Field(default="", max_length=MAX_FIELD_CHARS)
    personality: str = Field(default="", max_length=MAX_FIELD_CHARS)
    scenario: str = Field(default="", max_length=MAX_FIELD_CHARS)
    first_mes: str = Field(default="", max_length=MAX_FIELD_CHARS)
    mes_example: str = Field(default="", max_length=MAX_FIELD_CHARS)
    system_prompt: str = Field(default="", max_length=MAX_FIELD_CHARS)
    creator_notes: str = Field(default="", max_length=MAX_FIELD_CHARS)
    tags: list[str] = Field(default_factory=list, max_length=100)
    extensions: dict[str, object] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        """One line of visible text: no line breaks, control or direction-override characters
        (which reorder what the page shows), not only spaces; outer spaces are dropped."""
        name = unicodedata.normalize("NFKC", name).strip()
        if not name:
            raise ValueError("the name is empty or only spaces")
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
            raise ValueError("the name holds line breaks or invisible control characters")
        return name


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str
    data: CardData
    appearance: Appearance
    appearance_from: AppearanceSource = "card"
    voice: VoiceSettings = VoiceSettings()

    @property
    def name(self) -> str:
        return self.data.name

    def fill(self, text: str, user_name: str = "User") -> str:
        """Apply the {{char}} / {{user}} macros."""

        def replace(match: re.Match[str]) -> str:
            which = (match.group(1) or match.group(2)).lower()
            return self.name if which in ("char", "bot") else user_name

        return _MACROS.sub(replace, text)

    def greeting(self, user_name: str = "User") -> str:
        return self.fill(self.data.first_mes or f"Hi, I'm {self.name}!", user_name)

    def to_character(self) -> Character:
        """The identity a pipeline renders; the seed is stable for a given name."""
        digest = hashlib.sha256(self.name.encode()).digest()
        return Character(
            name=self.name,
            appearance=self.appearance,
            seed=int.from_bytes(digest[:4], "big") % 2**31,
        )

    def to_json(self) -> dict[str, object]:
        """The card as Character Card V2/V3 JSON, appearance included, for other card tools."""
        data = self.data.model_dump()
        data["extensions"] = {
            **data["extensions"],
            APPEARANCE_KEY: self.appearance.model_dump(),
            VOICE_KEY: self.voice.model_dump(),
        }
        version = "3.0" if self.spec == "chara_card_v3" else "2.0"
        return {"spec": self.spec, "spec_version": version, "data": data}


def _png_card_json(blob: bytes) -> bytes:
    """The card JSON inside a PNG's ccv3/chara text chunk (tEXt, zTXt or iTXt)."""
    found: dict[bytes, bytes] = {}
    position = len(_PNG_SIGNATURE)
    complete = False
    while position + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[position : position + 8])
        data = blob[position + 8 : position + 8 + length]
        if len(data) != length:
            raise CardError("the PNG is truncated")
        position += 12 + length
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword, _, rest = data.partition(b"\x00")
            if keyword in _CARD_CHUNK_KEYWORDS:
                if kind == b"zTXt":
                    rest = zlib.decompressobj().decompress(rest[1:], MAX_CARD_BYTES)
                elif kind == b"iTXt":
                    compressed, rest = rest[0], rest[2:]
                    rest = rest.split(b"\x00", 2)[-1]
                    if compressed:
                        rest = zlib.decompressobj().decompress(rest, MAX_CARD_BYTES)
                found[keyword] = rest
        if kind == b"IEND":
            complete = True
            break
    if not complete:
        raise CardError("the PNG is truncated")
    for keyword in _CARD_CHUNK_KEYWORDS:
        if keyword in found:
            try:
                return base64.b64decode(b"".join(found[keyword].split()), validate=True)
            except (binascii.Error, ValueError):
                raise CardError(f"the PNG's '{keyword.decode()}' chunk is not base64") from None
    raise CardError("this PNG carries no character card (no 'chara' or 'ccv3' text chunk)")


def _validated(model: type[_Model], raw: object, where: str) -> _Model:
    """`raw` as `model`, or a CardError naming the first bad field (under `where`)."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join([where] * bool(where) + [str(p) for p in first["loc"]]) or "card"
        raise CardError(f"invalid card field '{field}': {first['msg']}") from None


def parse_card(blob: bytes) -> Card:
    """A Card from the bytes of a JSON or PNG card file."""
    if len(blob) > MAX_CARD_BYTES:
        raise CardError(f"the card is {len(blob) / 2**20:.1f} MB; the limit is 5 MB")
    if blob.startswith(_PNG_SIGNATURE):
        blob = _png_card_json(blob)
    try:
        raw = json.loads(blob.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CardError(f"the card is not valid JSON ({error.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise CardError("the card's JSON must be an object")
    spec = raw.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = raw.get("data")
        if not isinstance(data, dict):
            raise CardError(f"a {spec} card needs a 'data' object")
    elif spec is None and "name" in raw:
        spec, data = "chara_card_v2", raw  # legacy V1: flat fields
    else:
        raise CardError(f"unsupported card spec {spec!r}; expected chara_card_v2 or chara_card_v3")
    card_data = _validated(CardData, data, "")
    appearance_from: AppearanceSource = "card"
    if APPEARANCE_KEY in card_data.extensions:
        appearance = _validated(Appearance, card_data.extensions[APPEARANCE_KEY], APPEARANCE_KEY)
    else:
        prose = "\n".join((card_data.description, card_data.personality, card_data.scenario))
        derived = appearance_from_text(prose)
        appearance, appearance_from = derived.appearance, "text" if derived.found else "default"
    voice = _validated(VoiceSettings, card_data.extensions.get(VOICE_KEY, {}), VOICE_KEY)
    return Card(
        spec=spec,
        data=card_data,
        appearance=appearance,
        appearance_from=appearance_from,
        voice=voice,
    )


def load_card(source: str | Path | bytes) -> Card:
    """A Card from a file path or the bytes of an upload."""
    if isinstance(source, bytes):
        return parse_card(source)
    path = Path(source)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise CardError(f"cannot read card file {path.name}: {error.strerror}") from None
    if size > MAX_CARD_BYTES:
        raise CardError(f"the card is {size / 2**20:.1f} MB; the limit is 5 MB")
    return parse_card(path.read_bytes())


def default_cards() -> list[Card]:
    """The characters shipped in assets/characters, sorted by name."""
    paths = sorted(p for p in CARDS_DIR.iterdir() if p.suffix in (".json", ".png"))
    return sorted((load_card(p) for p in paths), key=lambda card: card.name)


def write_png_card(card: Card, image_png: bytes) -> bytes:
    """A PNG that other card tools open: the image plus `chara` (V2) and `ccv3` (V3) chunks."""
    if not image_png.startswith(_PNG_SIGNATURE):
        raise CardError("write_png_card needs PNG image bytes")
    chunks = []
    for keyword, spec in ((b"chara", "chara_card_v2"), (b"ccv3", "chara_card_v3")):
        payload = json.dumps(card.model_copy(update={"spec": spec}).to_json()).encode()
        body = keyword + b"\x00" + base64.b64encode(payload)
        chunks.append(
            struct.pack(">I", len(body))
            + b"tEXt"
            + body
            + struct.pack(">I", zlib.crc32(b"tEXt" + body))
        )
    iend = image_png.rindex(b"IEND") - 4
    return image_png[:iend] + b"".join(chunks) + image_png[iend:]
