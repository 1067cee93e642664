"""A character's look derived from a card's prose, for cards without `persona/appearance`.

Cards from SillyTavern and other tools describe the character in words ("long pink hair",
"eyes the colour of amber", W++ `Hair("long" + "pink")`, PList `hair: long, pink`, booru tags
"pink hair, amber eyes") and carry no colours a renderer can use, so without this every such
card is drawn as the same default figure. Pure Python and offline, well under a millisecond a
card: a colour lexicon (the CSS names plus the words card writers use for hair, eyes, skin and
cloth, with modifiers such as "pale" or "deep") and two attachment rules. A colour belongs to
the noun it comes before ("a black sundress", "brown leather boots"); failing that, to the noun
it follows through linking words ("her hair is a deep crimson", "hair: long, pink"). The first
mention of each field wins, so a second person described later does not repaint the first.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pipelines.conditioning import Appearance

Part = Literal["hair", "eyes", "skin", "clothes"]
"""What a colour describes: words like "dark", "fair" or "black" mean different colours on each."""

# -- the colour lexicon -------------------------------------------------------------------------

_CSS = """
aliceblue f0f8ff antiquewhite faebd7 aqua 00ffff aquamarine 7fffd4 azure f0ffff beige f5f5dc
bisque ffe4c4 blanchedalmond ffebcd blueviolet 8a2be2 burlywood deb887 cadetblue 5f9ea0
chartreuse 7fff00 chocolate d2691e coral ff7f50 cornflowerblue 6495ed cornsilk fff8dc
crimson dc143c cyan 00ffff darkblue 00008b darkcyan 008b8b darkgoldenrod b8860b
darkgreen 006400 darkkhaki bdb76b darkmagenta 8b008b darkolivegreen 556b2f darkorange ff8c00
darkorchid 9932cc darkred 8b0000 darksalmon e9967a darkseagreen 8fbc8f darkslateblue 483d8b
darkslategray 2f4f4f darkslategrey 2f4f4f darkturquoise 00ced1 darkviolet 9400d3
deeppink ff1493 deepskyblue 00bfff dimgray 696969 dimgrey 696969 dodgerblue 1e90ff
firebrick b22222 floralwhite fffaf0 forestgreen 228b22 fuchsia ff00ff gainsboro dcdcdc
ghostwhite f8f8ff goldenrod daa520 greenyellow adff2f honeydew f0fff0 hotpink ff69b4
indianred cd5c5c indigo 4b0082 ivory fffff0 khaki f0e68c lavenderblush fff0f5 lawngreen 7cfc00
lemonchiffon fffacd lightblue add8e6 lightcoral f08080 lightcyan e0ffff
lightgoldenrodyellow fafad2 lightgray d3d3d3 lightgreen 90ee90 lightgrey d3d3d3
lightpink ffb6c1 lightsalmon ffa07a lightseagreen 20b2aa lightskyblue 87cefa
lightslategray 778899 lightslategrey 778899 lightsteelblue b0c4de lightyellow ffffe0
lime 00ff00 limegreen 32cd32 linen faf0e6 magenta ff00ff maroon 800000 mediumaquamarine 66cdaa
mediumblue 0000cd mediumorchid ba55d3 mediumpurple 9370db mediumseagreen 3cb371
mediumslateblue 7b68ee mediumspringgreen 00fa9a mediumturquoise 48d1cc mediumvioletred c71585
midnightblue 191970 mintcream f5fffa mistyrose ffe4e1 navajowhite ffdead oldlace fdf5e6
olive 808000 olivedrab 6b8e23 orangered ff4500 orchid da70d6 palegoldenrod eee8aa
palegreen 98fb98 paleturquoise afeeee palevioletred db7093 papayawhip ffefd5 peachpuff ffdab9
plum dda0dd powderblue b0e0e6 rebeccapurple 663399 rosybrown bc8f8f royalblue 4169e1
saddlebrown 8b4513 salmon fa8072 sandybrown f4a460 seagreen 2e8b57 seashell fff5ee
sienna a0522d skyblue 87ceeb slateblue 6a5acd slategray 708090 slategrey 708090 snow fffafa
springgreen 00ff7f steelblue 4682b4 tan d2b48c teal 008080 thistle d8bfd8 tomato ff6347
turquoise 40e0d0 wheat f5deb3 whitesmoke f5f5f5 yellowgreen 9acd32
"""
"""The CSS named colours, less those that mislead as words: "peru" (a country), "moccasin" (a
shoe), "darkgray" (lighter than gray). The basic names are tuned below."""

_CARD_WORDS = """
black 1d1d21 white f5f5f2 red d62828 blue 2f5bd3 green 2e9e4f yellow f2d13c orange f08a24
purple 7b3fb3 pink f48fb1 brown 6b4423 grey 8a8a8e gray 8a8a8e navy 1f2a5c gold d4af37
golden e0b84a violet 7f4fc9 lavender b9a0e3 lilac c8a2c8 periwinkle 8f99fb mauve b784a7
rose e8688a cream fff3d6 charcoal 36454f slate 6d7b8d cobalt 0047ab cerulean 2a7bd4
sky 87ceeb ice d6ecf3 denim 3b5b8c burgundy 800020 wine 722f37 blood 8a0303 scarlet e8261c
vermilion e34234 cherry d2042d ruby b3123a garnet 7b1f26 rust b7410e copper b8632e
bronze a97142 amber e09b2d honey d9a441 caramel b5793a mocha 6f4e37 coffee 6f4e37
espresso 3c2a21 mahogany 6b2d1c chestnut 7b3f22 auburn 8f3b1b ginger c9581f hazel 8e7a3c
blonde e6c36a blond e6c36a platinum e5e4e2 sandy c9a66b flaxen e8d6a0 champagne f1ddb0
brunette 5a3a22 raven 1c1d2b jet 121216 ebony 2a2220 onyx 1b1b1f obsidian 151518 ink 1c1f33
midnight 191970 ash 9a9a96 silver c9cdd2 steel 8a9099 iron 6e6e73 emerald 1f9e5a jade 00a86b
sapphire 1f4fbf amethyst 9966cc topaz ffc87c mint 8fe3b5 sage 9caf88 peach ffcba4
fiery e2532a silvery c9cdd2 coppery b8632e inky 1c1f33 snowy fffafa creamy fff3d6
"""
"""The basic names tuned to read well on a cartoon (no pure #000000 or #0000ff), plus the words
card writers use for hair, eyes, gems and fabrics. One value per word everywhere, except the
few words in `_BY_PART` whose meaning depends on what they describe."""

_PHRASES = {
    "jet black": "121216",
    "navy blue": "1f2a5c",
    "off white": "f2efe6",
    "salt and pepper": "7d7d7d",
    "platinum blonde": "ece3c8",
    "golden blonde": "e0b04a",
    "honey blonde": "d9a441",
    "dirty blonde": "b89a5e",
    "ash blonde": "c8bc9a",
    "strawberry blonde": "e3a16f",
    "sun kissed": "c98e5f",
}

_BY_PART: dict[str, dict[str, str]] = {
    "hair": {
        "red": "b5352a",
        "brown": "5a3a22",
        "golden": "e0b04a",
        "fair": "e6c36a",
        "dark": "2e1f17",
        "light": "a47e54",
    },
    "eyes": {"dark": "3b2418", "light": "9cb6c8", "pale": "9cb6c8"},
    "skin": {
        "porcelain": "fbe9df",
        "alabaster": "f9ebdf",
        "pale": "f6dccb",
        "white": "f6dccb",
        "ivory": "f8e3c8",
        "creamy": "f7e1cc",
        "cream": "f7e1cc",
        "fair": "f3d2b3",
        "light": "f1c7a5",
        "peach": "f5c39e",
        "peachy": "f5c39e",
        "rosy": "f2c1ae",
        "pink": "f2c1ae",
        "medium": "d9a57b",
        "olive": "c49a6c",
        "golden": "d8a56b",
        "tan": "c98e5f",
        "tanned": "c98e5f",
        "sunkissed": "c98e5f",
        "sun kissed": "c98e5f",
        "honey": "c98e5f",
        "swarthy": "9c6b45",
        "caramel": "b97a4d",
        "bronze": "a8703f",
        "bronzed": "a8703f",
        "dusky": "8a5a3c",
        "brown": "8d5a3b",
        "mocha": "7a4e33",
        "coffee": "7a4e33",
        "dark": "6b4226",
        "deep": "6b4226",
        "chocolate": "5a3825",
        "black": "4a2e1d",
        "ebony": "3d2618",
    },
    "clothes": {},
}
"""Words that mean another colour on hair, eyes or skin ("black skin", "fair hair", "dark eyes"),
and the skin tones that are no colour on cloth ("tanned", "porcelain")."""


def _words(words: str) -> frozenset[str]:
    return frozenset(words.split())


def _hex_table(pairs: str) -> dict[str, str]:
    words = pairs.split()
    return {name: "#" + value for name, value in zip(words[::2], words[1::2], strict=True)}


_COLOURS = _hex_table(_CSS) | _hex_table(_CARD_WORDS) | {k: "#" + v for k, v in _PHRASES.items()}
_PART_COLOURS = {part: {k: "#" + v for k, v in table.items()} for part, table in _BY_PART.items()}
_COLOUR_KEYS = set(_COLOURS).union(*_PART_COLOURS.values())
_PHRASE_STARTS = (
    {key.split()[0] for key in _COLOUR_KEYS if " " in key}
    | _COLOUR_KEYS
    | _words(
        "dark light medium pale deep dim hot ghost lawn dodger royal cornflower forest sea "
        "powder navajo misty saddle indian old papaya lemon alice antique blanched burly cadet "
        "floral spring rebecca fire"
    )
)
"""Words that may start a colour of two or three words ("jet black", "light sea green")."""


@dataclass(frozen=True)
class _Shift:
    """A modifier: lightness moves `amount` of the way to `toward`; saturation is scaled."""

    toward: float
    amount: float
    saturation: float = 1.0


_MODIFIERS = {
    "light": _Shift(1.0, 0.35),
    "pale": _Shift(1.0, 0.5, 0.75),
    "icy": _Shift(1.0, 0.5, 0.75),
    "pastel": _Shift(1.0, 0.55, 0.8),
    "baby": _Shift(1.0, 0.55, 0.8),
    "soft": _Shift(1.0, 0.2, 0.85),
    "dark": _Shift(0.0, 0.38),
    "deep": _Shift(0.0, 0.25, 1.15),
    "bright": _Shift(0.55, 0.3, 1.3),
    "vivid": _Shift(0.55, 0.3, 1.3),
    "vibrant": _Shift(0.55, 0.3, 1.3),
    "brilliant": _Shift(0.55, 0.3, 1.3),
    "electric": _Shift(0.55, 0.5, 1.6),
    "neon": _Shift(0.55, 1.0, 4.0),
    "dusty": _Shift(0.6, 0.2, 0.55),
    "muted": _Shift(0.6, 0.2, 0.55),
    "faded": _Shift(0.6, 0.2, 0.55),
    "dull": _Shift(0.6, 0.2, 0.55),
    "dirty": _Shift(0.6, 0.2, 0.55),
}
_TINTS = {
    "reddish": "red",
    "bluish": "blue",
    "blueish": "blue",
    "greenish": "green",
    "pinkish": "pink",
    "purplish": "purple",
    "yellowish": "yellow",
    "greyish": "grey",
    "grayish": "grey",
    "brownish": "brown",
    "orangish": "orange",
    "orangey": "orange",
}
"""'-ish' words: a quarter of their colour mixed into the colour they qualify ("reddish brown")."""
_COLOUR_SUFFIXES = {"colored", "coloured", "toned", "tinted", "hued"}
"""Words a colour may carry ("amber-colored eyes") that add nothing to it."""


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    red, green, blue = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return red, green, blue


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(min(max(v, 0.0), 1.0) * 255):02x}" for v in rgb)


def _mix(a: str, b: str, weight_of_b: float) -> str:
    return _hex(x + (y - x) * weight_of_b for x, y in zip(_rgb(a), _rgb(b), strict=True))


def _shifted(hex_colour: str, shift: _Shift) -> str:
    hue, lightness, saturation = colorsys.rgb_to_hls(*_rgb(hex_colour))
    lightness += (shift.toward - lightness) * shift.amount
    return _hex(colorsys.hls_to_rgb(hue, lightness, min(saturation * shift.saturation, 1.0)))


# -- words --------------------------------------------------------------------------------------

_TOP, _BOTTOM, _BOTH, _SHOES = ("top",), ("bottom",), ("top", "bottom"), ("shoes",)
_BLOCK: tuple[str, ...] = ()
"""A noun no field comes from: a colour attached to it ("red lips", "gold necklace") is spent."""


def _nouns(fields: tuple[str, ...], words: str) -> dict[str, tuple[str, ...]]:
    return dict.fromkeys(_words(words), fields)


_NOUNS: dict[str, tuple[str, ...]] = {
    **_nouns(
        ("hair",),
        "hair locks tresses mane bangs hairstyle haircut ponytail ponytails pigtails pigtail "
        "twintails twintail braid braids plait plaits curls ringlets afro mohawk bob dreadlocks "
        "dreads",
    ),
    **_nouns(("eyes",), "eyes eye irises iris pupils gaze"),
    **_nouns(("skin",), "skin complexion skintone"),
    **_nouns(
        _TOP,
        "shirt tee tshirt blouse hoodie hoody sweater jumper cardigan jacket coat blazer vest "
        "waistcoat tunic top tanktop camisole cami corset bodice polo pullover sweatshirt "
        "turtleneck parka anorak windbreaker overcoat trenchcoat raincoat cloak cape poncho "
        "haori uniform armor armour breastplate chainmail jersey",
    ),
    **_nouns(
        _BOTTOM,
        "skirt miniskirt jeans trousers pants shorts leggings slacks chinos sweatpants joggers "
        "hakama culottes capris breeches kilt sarong",
    ),
    **_nouns(
        _BOTH,
        "dress sundress gown robe robes frock kimono yukata jumpsuit bodysuit leotard catsuit "
        "romper overalls dungarees suit tracksuit swimsuit tuxedo cheongsam qipao sari saree "
        "outfit clothes clothing attire garb",
    ),
    **_nouns(
        _SHOES,
        "shoes shoe boots boot sneakers trainers heels stilettos pumps sandals flats loafers "
        "slippers clogs moccasins oxfords footwear converse geta",
    ),
    **_nouns(
        ("accent",),
        "buttons button trim collar ribbon ribbons bow bows tie necktie bowtie scarf choker "
        "sash cravat accents embroidery",
    ),
    **_nouns(
        _BLOCK,
        "lips lipstick nails polish cheeks freckles eyeshadow eyeliner makeup mascara lashes "
        "eyelashes eyebrows brows beard moustache mustache stubble horns tail tails wings ears "
        "fur scales feathers streaks highlights tips stripes socks stockings tights thighhighs "
        "gloves hat cap beret hood headband hairband hairpin clip clips belt bag glasses "
        "spectacles sunglasses necklace earrings jewelry jewellery pendant ring bracelet flower "
        "flowers apron mask patch shadow walls wall door book notebook cat dog car sky "
        "stars",
    ),
}
"""Nouns a colour can belong to, and the fields each one paints."""
_SUFFIX_NOUNS = {
    "haired": ("hair",),
    "headed": ("hair",),
    "eyed": ("eyes",),
    "skinned": ("skin",),
    "complexioned": ("skin",),
}
"""The second half of "silver-haired", "blue-eyed": a noun only after a colour."""
_HAIR_ONLY_COLOURS = {"blonde", "blond", "brunette"}
"""Colours that mean hair even with no noun ("a petite blonde with green eyes")."""
_HETEROCHROMIA = {"heterochromia", "heterochromatic", "heterochromic"}
_MASS_NOUNS = _words("armor armour clothing attire garb footwear chainmail trim converse")

_STOP_WORDS = _words(
    "with and or but in on of at by for from to into onto over under her his their its my your "
    "our a an the is are was were has have had that which who while as she he they it i you we "
    "this these those wearing wears wore like than not no one all"
)
"""Words that end the adjectives between a colour and its noun."""
_LINK_WORDS = _words(
    "is are was were be been a an the of colour color colored coloured shade shades hue tone "
    "tones tint like as that which and two naturally dyed always usually now still also almost "
    "nearly mostly entirely completely striking startling vivid beautiful stunning piercing "
    "warm cool cold glowing glow glows shining shine shines sparkling gleaming shimmering pure "
    "very quite rather so truly same kept worn"
)
"""Words that may stand between a noun and the colour after it ("eyes the colour of amber")."""
_KEY_OPENERS = {":", "(", "="}
_KEY_QUALIFIERS = {"color", "colour", "tone", "style"}
"""'Hair color: pink', 'Skin tone("olive")': the word between a key's noun and its opener."""
_HARD_STOPS = set(".!?;\n)]}[{")
_SENTENCE_ENDS = set(".!?;\n)]}")

# -- hair styles --------------------------------------------------------------------------------

_HAIR_STYLE_PRIORITY = ("bald", "ponytail", "bun", "bob", "spiky", "curly", "long", "short")
"""When one sentence names several styles, the shape that shows most wins: "long hair in a bun"
is drawn as a bun."""
_HAIR_WORDS = {"hair", "locks", "tresses", "mane", "hairstyle", "haircut", "haired"}
_STYLE_ADJECTIVES = {
    "long": "long",
    "flowing": "long",
    "cascading": "long",
    "short": "short",
    "cropped": "short",
    "buzzed": "short",
    "shorn": "short",
    "curly": "curly",
    "frizzy": "curly",
    "coily": "curly",
    "kinky": "curly",
    "spiky": "spiky",
    "spikey": "spiky",
    "spiked": "spiky",
    "bald": "bald",
    "wavy": "wavy",
}
"""Words that describe hair only when they stand next to it; "wavy" draws as curly, but yields
to any length ("long wavy hair" is long)."""
_LENGTH_PREFIXES = {
    **dict.fromkeys(_words("shoulder waist hip knee floor ankle back chest thigh butt"), "long"),
    **dict.fromkeys(_words("chin jaw ear medium mid"), "bob"),
}
"""'shoulder-length': the renderer's long hair ends near the shoulders, its bob at the jaw."""
_SHAPE_NOUNS = {
    **dict.fromkeys(
        _words("ponytail ponytails pigtails pigtail twintails twintail braid braids plait plaits"),
        "ponytail",
    ),
    **dict.fromkeys(_words("bun buns chignon topknot odango"), "bun"),
    **dict.fromkeys(_words("bob bobbed"), "bob"),
    **dict.fromkeys(_words("afro curls ringlets"), "curly"),
    "mohawk": "spiky",
    "bald": "bald",
    "balding": "bald",
    **dict.fromkeys(_words("dreadlocks dreads"), "long"),
    "buzzcut": "short",
    "crewcut": "short",
}
"""Words that name a hair shape on their own ("in a ponytail", "a shaved head")."""
_SHAPE_PAIRS = {
    ("twin", "tails"): "ponytail",
    ("pony", "tail"): "ponytail",
    ("top", "knot"): "bun",
    ("pixie", "cut"): "short",
    ("buzz", "cut"): "short",
    ("crew", "cut"): "short",
    ("shaved", "head"): "bald",
    ("shaven", "head"): "bald",
    ("bob", "cut"): "bob",
}
_BUN_LEADS = {"messy", "tight", "high", "low", "top", "neat", "double", "space", "loose", "hair"}
"""A bun is a hairstyle after these words, or in a sentence about hair; else it may be bread."""
_PHRASE_LEADS = {
    "a", "an", "her", "his", "their", "its", "my", "two", "twin", "high", "low", "side", "messy",
    "tight", "neat", "loose", "long", "short", "small", "big", "thick", "double", "single",
}  # fmt: skip
"""Words kept at the front of a quoted phrase ("a tight bun", "two high pigtails")."""
_SHAPE_STARTS = set(_SHAPE_NOUNS) | {first for first, _ in _SHAPE_PAIRS}
_SUBJECTS = {"she", "he", "they", "it", "i", "who", "which", "that", "and"}
"""Before a shape word these make it a verb: "she curls up", "who braids flowers"."""
_REACH_LEADS = {"to", "past", "down", "below", "reaching", "reaches", "over"}
_REACH_WORDS = {
    **dict.fromkeys(_words("shoulders shoulder waist hips back knees ankles chest"), "long"),
    **dict.fromkeys(_words("chin jaw jawline ears"), "bob"),
}
"""How far hair reaches ("falls to her waist", "down to his chin")."""

# -- tokens -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+|[-–—:;,.!?()\[\]{}+=/&\n]")


@dataclass(slots=True)
class _Token:
    text: str
    """Lower case."""
    start: int
    end: int
    sentence: int
    is_word: bool
    capital: bool = False
    hyphen_after: bool = False
    """Joined to the next word by a hyphen ("skin-tight", "jet-black")."""
    colour: tuple[str, int] | None = None
    """The lexicon key starting here and how many tokens it spans."""


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    sentence = 0
    for match in _TOKEN.finditer(text):
        raw, start, end = match.group(), match.start(), match.end()
        previous = tokens[-1] if tokens else None
        if raw == "-" and previous and previous.end == start and text[end : end + 1].isalpha():
            previous.hyphen_after = True
            continue
        if raw in ("-", "–", "—"):
            raw = ","  # a dash between words separates like a comma
        is_word = raw[0].isalnum()
        tokens.append(_Token(raw.lower(), start, end, sentence, is_word, raw[0].isupper()))
        if raw in _SENTENCE_ENDS:
            sentence += 1
    for i, token in enumerate(tokens):
        token.colour = _colour_key(tokens, i)
    return tokens


# -- colour phrases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ColourPhrase:
    start: int
    colour_end: int
    """Token index after the last colour word."""
    end: int
    """Token index after everything the phrase consumed ("red and black", "amber-colored")."""
    modifiers: tuple[str, ...]
    colours: tuple[str, ...]


def _colour_key(tokens: list[_Token], i: int) -> tuple[str, int] | None:
    """The lexicon key starting at token i and how many tokens it spans."""
    first = tokens[i]
    if not first.is_word:
        return None
    if first.text in _PHRASE_STARTS:
        for length in (3, 2):
            words = tokens[i : i + length]
            if len(words) == length and all(t.is_word for t in words):
                spaced = " ".join(t.text for t in words)
                if spaced in _COLOUR_KEYS:
                    return spaced, length
                if spaced.replace(" ", "") in _COLOURS:
                    return spaced.replace(" ", ""), length
    if first.text in _COLOUR_KEYS:
        return first.text, 1
    if first.text.endswith("s") and first.text[:-1] in _COLOURS:
        return first.text[:-1], 1
    return None


def _colour_phrase(tokens: list[_Token], i: int) -> _ColourPhrase | None:
    """The colour phrase starting at token i: modifiers, then colour words ("pale blue-green")."""
    modifiers: list[str] = []
    j = i
    while j < len(tokens):
        key = tokens[j].colour
        word = tokens[j].text
        if key and (key[1] > 1 or word not in _MODIFIERS):
            break
        if word not in _MODIFIERS and word not in _TINTS:
            break
        modifiers.append(word)
        j += 1
    colours: list[str] = []
    while j < len(tokens) and (key := tokens[j].colour):
        colours.append(key[0])
        j += key[1]
    colour_end = j
    if not colours and not modifiers:
        return None
    while j < len(tokens) and tokens[j].text in _COLOUR_SUFFIXES:
        j += 1
    if colours and j + 1 < len(tokens) and tokens[j].text in ("and", "or", "/", "&"):
        k = j + 1
        while k < len(tokens) and (key := tokens[k].colour):
            k += key[1]
        j = k if k > j + 1 else j
    return _ColourPhrase(i, colour_end, j, tuple(modifiers), tuple(colours))


def _resolve(phrase: _ColourPhrase, part: Part) -> str | None:
    """The hex colour a phrase means on `part`, or None when it names none ("light" cloth)."""
    by_part = _PART_COLOURS[part]
    whole = " ".join(phrase.modifiers + phrase.colours)
    for key in (whole, whole.replace(" ", "")):
        if found := by_part.get(key) or _COLOURS.get(key):
            return found
    if not phrase.colours:
        return by_part.get(phrase.modifiers[-1])
    colour = ""
    for key in phrase.colours:
        value = by_part.get(key) or _COLOURS.get(key)
        if value is None:
            return None
        colour = _mix(colour, value, 0.6) if colour else value
    for modifier in reversed(phrase.modifiers):
        if modifier in _TINTS:
            colour = _mix(colour, _COLOURS[_TINTS[modifier]], 0.25)
        else:
            colour = _shifted(colour, _MODIFIERS[modifier])
    return colour


def resolve_colour(name: str, part: Part = "clothes") -> str | None:
    """The hex colour a name such as "pastel pink" or "jet-black" means on `part`, or None."""
    tokens = _tokens(name)
    phrase = _colour_phrase(tokens, 0) if tokens else None
    if phrase is None or phrase.end != len(tokens):
        return None
    return _resolve(phrase, part)


# -- attaching colours to nouns -----------------------------------------------------------------


def _noun_fields(token: _Token) -> tuple[str, ...] | None:
    """The fields a noun paints; None for a word that is no noun here ("skin" in "skin-tight")."""
    if token.hyphen_after or (token.text == "bob" and token.capital):
        return None
    fields = _NOUNS.get(token.text)
    if fields is None and token.text.endswith("s"):
        fields = _NOUNS.get(token.text[:-1])
    return fields


def _head_noun(tokens: list[_Token], i: int) -> int:
    """The last noun of a compound starting at noun i: "dress shoes", "hair ribbon"."""
    while i + 1 < len(tokens) and _noun_fields(tokens[i + 1]) is not None:
        i += 1
    return i


@dataclass(frozen=True)
class _Attachment:
    fields: tuple[str, ...]
    start: int
    """First token of the source phrase."""
    end: int
    """Token index after it."""
    noun: int


def _forward(tokens: list[_Token], phrase: _ColourPhrase) -> _Attachment | None:
    """The noun a colour comes before, over up to three adjectives ("brown leather boots")."""
    j, adjectives = phrase.end, 0
    while j < len(tokens) and adjectives <= 3:
        token = tokens[j]
        if not token.is_word:
            # "pale, freckled skin" but not "her eyes are blue, hair long"
            after = tokens[j + 1] if j + 1 < len(tokens) else None
            if token.text != "," or after is None or not after.is_word or _noun_fields(after):
                return None
            j += 1
            continue
        if token.text in _SUFFIX_NOUNS and j == phrase.end:
            return _Attachment(_SUFFIX_NOUNS[token.text], phrase.start, j + 1, j)
        if _noun_fields(token) is not None:
            head = _head_noun(tokens, j)
            return _Attachment(_noun_fields(tokens[head]) or (), phrase.start, head + 1, head)
        if token.text in _STOP_WORDS or token.colour:
            return None
        adjectives += 1
        j += 1
    return None


def _key_noun(tokens: list[_Token], opener: int) -> int | None:
    """The noun a key-value opener belongs to: 'hair:', 'Eyes(', 'Hair color('."""
    i = opener - 1
    if i >= 0 and tokens[i].text in _KEY_QUALIFIERS:
        i -= 1
    if i >= 0 and tokens[i].is_word and _noun_fields(tokens[i]) is not None:
        return i
    return None


def _backward(tokens: list[_Token], phrase: _ColourPhrase) -> _Attachment | None:
    """The noun a colour follows, through linking words ("her hair is a deep crimson") or as the
    value of a key ("hair: long, pink", `Hair("long" + "pink")`)."""
    between: list[_Token] = []
    k = phrase.start - 1
    while k >= 0 and len(between) <= 8:
        token = tokens[k]
        if token.text in _KEY_OPENERS:
            noun = _key_noun(tokens, k)
            if noun is None or any(t.text == "with" for t in between):
                return None
            return _Attachment(_noun_fields(tokens[noun]) or (), noun, phrase.colour_end, noun)
        if token.text in _HARD_STOPS or token.colour:
            return None
        fields = _noun_fields(token) if token.is_word else None
        if fields is not None:
            unknown = [
                t for t in between if t.text not in _LINK_WORDS and t.text not in _STYLE_ADJECTIVES
            ]
            if len(unknown) > 1 or any(not t.is_word for t in between):
                return None
            if not phrase.colours and not between:
                return None  # "her eyes light up"
            start = k - 1 if k > 0 and _is_possessive(tokens[k - 1]) else k
            return _Attachment(fields, start, phrase.colour_end, k)
        between.append(token)
        k -= 1
    return None


def _is_possessive(token: _Token) -> bool:
    return token.text in ("her", "his", "their", "its", "my") or token.text.endswith("'s")


# -- hair style ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StyleCue:
    sentence: int
    rank: int
    style: str
    """One of _HAIR_STYLE_PRIORITY, or "wavy"."""
    start: int
    end: int


def _rank(style: str) -> int:
    return len(_HAIR_STYLE_PRIORITY) if style == "wavy" else _HAIR_STYLE_PRIORITY.index(style)


def _style_at(tokens: list[_Token], i: int) -> tuple[str, int] | None:
    """A style adjective ending at token i ("long", "shoulder-length") and its first token."""
    word = tokens[i].text
    if word == "length" and i > 0 and tokens[i - 1].text in _LENGTH_PREFIXES:
        return _LENGTH_PREFIXES[tokens[i - 1].text], i - 1
    if word in _STYLE_ADJECTIVES:
        return _STYLE_ADJECTIVES[word], i
    return None


def _adjective_cues(tokens: list[_Token], noun: int) -> list[tuple[str, int]]:
    """Styles describing the hair noun at `noun`: adjectives before it ("long, wavy pink hair"),
    after it as a key's value or through "is" ("hair: long", "her hair is short"), and how far
    it reaches ("hair that falls to her waist")."""
    cues = []
    k = noun - 1
    while k >= 0 and noun - k <= 6:
        token = tokens[k]
        if token.text in (",", "+"):
            # "long, wavy pink hair" is one list; "long sleeves, ribbon, hair" is three tags
            if k == 0 or not (_style_at(tokens, k - 1) or tokens[k - 1].colour):
                break
        elif not token.is_word or (token.text in _STOP_WORDS and token.text != "and"):
            break
        if (found := _style_at(tokens, k)) is not None:
            cues.append(found)
            k = found[1]
        k -= 1
    after = noun + 1
    if after < len(tokens) and tokens[after].text in _KEY_QUALIFIERS:
        after += 1
    is_key = after < len(tokens) and tokens[after].text in _KEY_OPENERS
    linked = after < len(tokens) and tokens[after].text in ("is", "are", "was")
    for k in range(after + 1, min(after + 11, len(tokens))):
        token = tokens[k]
        if token.text in _HARD_STOPS or token.text in _KEY_OPENERS:
            break
        if (is_key or linked) and (found := _style_at(tokens, k)) is not None:
            cues.append((found[0], k))
        if token.text in _REACH_WORDS:
            lead = k - 2 if _is_possessive(tokens[k - 1]) else k - 1
            if tokens[lead].text in _REACH_LEADS:
                cues.append((_REACH_WORDS[token.text], k))
        if token.text == "," and not is_key:
            linked = False
    return cues


def _shape_at(tokens: list[_Token], i: int, hair_sentences: set[int]) -> tuple[str, int] | None:
    """A hair shape named at token i ("ponytail", "shaved head") and its last token."""
    token = tokens[i]
    if i + 1 < len(tokens) and (pair := _SHAPE_PAIRS.get((token.text, tokens[i + 1].text))):
        return pair, i + 1
    shape = _SHAPE_NOUNS.get(token.text)
    lead = tokens[i - 1].text if i else ""
    if shape is None or lead in _SUBJECTS or (token.text == "bob" and token.capital):
        return None  # "she curls up", "he braids her hair", Bob the neighbour
    if shape == "bun" and lead not in _BUN_LEADS and token.sentence not in hair_sentences:
        return None
    return shape, i


def _hair_style(tokens: list[_Token]) -> _StyleCue | None:
    """The first sentence that names a hair style decides it; within it, the style that shows
    most (see _HAIR_STYLE_PRIORITY)."""
    hair_sentences = {t.sentence for t in tokens if t.text in _HAIR_WORDS}
    cues: list[_StyleCue] = []
    for i, token in enumerate(tokens):
        if cues and token.sentence > cues[0].sentence:
            break
        if token.text in _HAIR_WORDS and not token.hyphen_after:
            for style, position in _adjective_cues(tokens, i):
                start, end = min(position, i), max(position, i) + 1
                cues.append(_StyleCue(token.sentence, _rank(style), style, start, end))
        if token.text in _SHAPE_STARTS and (shape := _shape_at(tokens, i, hair_sentences)):
            start = i
            while start > 0 and i - start < 3 and tokens[start - 1].text in _PHRASE_LEADS:
                start -= 1
            cues.append(_StyleCue(token.sentence, _rank(shape[0]), shape[0], start, shape[1] + 1))
    return min(cues, key=lambda cue: (cue.rank, cue.start), default=None)


# -- putting it together ------------------------------------------------------------------------


@dataclass(frozen=True)
class DerivedAppearance:
    """An appearance read from prose, and for each field it set, the phrase it came from."""

    appearance: Appearance
    found: dict[str, str]


@dataclass(frozen=True)
class _Match:
    colour: str
    phrase: str
    """As written in the card ("a black sundress", "hair: long, pink")."""
    label: str
    """Colour and noun, for the description ("brown leather boots")."""
    colour_words: str


PART_OF_FIELD: dict[str, Part] = {
    "hair": "hair",
    "eyes": "eyes",
    "skin": "skin",
    "top": "clothes",
    "bottom": "clothes",
    "shoes": "clothes",
    "accent": "clothes",
}
"""What each Appearance colour field describes, so its colour words are read in that sense."""
_MAX_PHRASE_CHARS = 120
READ_CHARS = 20_000
"""Cards describe the look near the top; past one full card field (~10 ms to read) the text
costs time and mostly describes other people."""
_MARKUP = str.maketrans("", "", '"*()[]{}+')


def _span(text: str, tokens: list[_Token], start: int, end: int) -> str:
    """Tokens start..end as written, closed where they open a quote or bracket (W++ values)."""
    first, last = tokens[start].start, tokens[end - 1].end
    if text.count('"', first, last) % 2 and text.startswith('"', last):
        last += 1
    if text.count("(", first, last) > text.count(")", first, last):
        close = text.find(")", last, last + 80)
        if close != -1 and "\n" not in text[last:close]:
            last = close + 1
    return " ".join(text[first:last].split())[:_MAX_PHRASE_CHARS]


def _plain(text: str) -> str:
    """Lower-case words without quotes or W++ markup, for the description."""
    return " ".join(text.translate(_MARKUP).lower().split())[:60]


def _attach(
    tokens: list[_Token], phrase: _ColourPhrase, heterochromia_at: int
) -> _Attachment | None:
    """What a colour phrase describes, if anything."""
    attachment = _forward(tokens, phrase) or _backward(tokens, phrase)
    if attachment is not None:
        return attachment
    if phrase.colours and phrase.colours[-1].split()[-1] in _HAIR_ONLY_COLOURS:
        return _Attachment(("hair",), phrase.start, phrase.colour_end, phrase.start)
    if (
        phrase.start - heterochromia_at <= 12
        and tokens[heterochromia_at].sentence == tokens[phrase.start].sentence
    ):
        return _Attachment(("eyes",), heterochromia_at, phrase.colour_end, heterochromia_at)
    return None


def _colour_matches(text: str, tokens: list[_Token]) -> dict[str, _Match]:
    """The first colour found for each field, in the order the text mentions them."""
    found: dict[str, _Match] = {}
    heterochromia_at = -100
    i = 0
    while i < len(tokens):
        if tokens[i].text in _HETEROCHROMIA:
            heterochromia_at = i
        phrase = _colour_phrase(tokens, i)
        if phrase is None:
            i += 1
            continue
        attachment = _attach(tokens, phrase, heterochromia_at)
        if attachment is not None and attachment.fields:
            colour_words = _plain(_span(text, tokens, phrase.start, phrase.colour_end))
            start = attachment.start
            if start == phrase.start:  # "a black sundress", "long pink hair"
                label = _plain(_span(text, tokens, start, attachment.end))
                while (
                    start > 0
                    and phrase.start - start < 3
                    and tokens[start - 1].text in _PHRASE_LEADS
                ):
                    start -= 1
            else:
                label = f"{colour_words} {tokens[attachment.noun].text}"
            for field in attachment.fields:
                colour = None if field in found else _resolve(phrase, PART_OF_FIELD[field])
                if colour is not None:
                    source = _span(text, tokens, start, attachment.end)
                    found[field] = _Match(colour, source, label, colour_words)
        i = phrase.end
    return found


def _with_article(label: str) -> str:
    noun = label.split()[-1]
    if noun in _MASS_NOUNS or (noun.endswith("s") and not noun.endswith("ss")):
        return label
    return ("an " if label[0] in "aeio" else "a ") + label


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _description(matches: dict[str, _Match], style: str | None) -> str:
    """'a person with long pink hair and amber eyes, wearing a black sundress'."""
    features = []
    hair = matches["hair"].colour_words if "hair" in matches else ""
    if style == "bald":
        features.append("a bald head")
    elif style in ("bob", "ponytail", "bun"):
        features.append(f"{hair} hair in a {style}".strip())
    elif style or hair:
        features.append(" ".join(w for w in (style, hair, "hair") if w))
    features += [f"{matches[f].colour_words} {f}" for f in ("eyes", "skin") if f in matches]
    if "accent" in matches:
        features.append(_with_article(matches["accent"].label))
    worn = []
    top = matches.get("top")
    for field in ("top", "bottom", "shoes"):
        match = matches.get(field)
        if match is not None and (field != "bottom" or top is None or match.phrase != top.phrase):
            worn.append(_with_article(match.label))  # a dress is worn once, not top and bottom
    description = "a person"
    if features:
        description += " with " + _listed(features)
    if worn:
        description += ", wearing " + _listed(worn)
    return description[:500]


def appearance_from_text(text: str) -> DerivedAppearance:
    """The appearance a card's prose describes; fields it does not mention keep their defaults.
    Reads the first READ_CHARS characters."""
    text = text[:READ_CHARS].replace("’", "'")
    tokens = _tokens(text)
    matches = _colour_matches(text, tokens)
    cue = _hair_style(tokens)
    found = {field: match.phrase for field, match in matches.items()}
    fields: dict[str, str] = {field: match.colour for field, match in matches.items()}
    if cue is not None:
        found["hair_style"] = _span(text, tokens, cue.start, cue.end)
        fields["hair_style"] = "curly" if cue.style == "wavy" else cue.style
    if found:
        fields["description"] = _description(matches, cue.style if cue else None)
    return DerivedAppearance(Appearance(**fields), found)
