"""What travellers say, and the normalised value each wording stands for: one table of rules
for the fixed vocabulary, and the tables (airports' cities, airlines) behind the finders of
open values. Written from real phrasing: requests made while planning ("find me economy
flights from SFO", "a reasonably priced place", "a house to stay in") as well as statements
("I always fly premium economy", "I'm vegan").

How a rule's `polarity` turns a mention into a statement (qjobs/memory/extract.py applies it):
- `identity`: what the user is or eats ("I'm vegan", "my husband is coeliac"), or asks for
  ("a vegetarian restaurant"); a negation withdraws it ("I'm not vegan any more").
- `fixed`: the wording carries its own meaning ("we never eat meat", "direct flights only").
- `given`: the wording states the value, as a choice unless it is a habit ("from SFO", "keep
  it under $2,000"; "my home airport is BOS" is stated).
- `choice`: counts only where the user chooses or asks ("book me an aisle seat", "find me
  a house", "premium economy, please"), since a mere mention ("our hotel is near the
  station") is no preference.
- `liking`: needs a liking ("we love beaches") or a dislike ("I hate crowds").
- `interest`: a liking, or a request to visit that kind of place ("find me a museum").
- `aversion`: things to avoid: "no red-eyes" adds, "I don't mind layovers" withdraws.
"""

import re
from dataclasses import dataclass
from typing import Any, Literal

Polarity = Literal["identity", "fixed", "given", "choice", "liking", "interest", "aversion"]

LIST_CATEGORIES = frozenset({"dietary", "interests", "avoid", "airlines", "destinations"})
SCALAR_CATEGORIES = frozenset({"seat", "cabinClass", "accommodation", "budget", "homeAirport", "hotelClass"})
CATEGORIES = LIST_CATEGORIES | SCALAR_CATEGORIES

BUDGET, MID_RANGE, LUXURY = {"level": "budget"}, {"level": "mid_range"}, {"level": "luxury"}


@dataclass(frozen=True)
class Rule:
    category: str
    value: Any
    pattern: str
    polarity: Polarity = "choice"
    confidence: float = 0.9


PRICED = r"(?:[- ]?priced|[- ]price(?: range)?| pricing| prices)?"

# fmt: off
RULES: tuple[Rule, ...] = (
    # dietary (list)
    Rule("dietary", "vegan",             r"\bvegans?\b", "identity"),
    Rule("dietary", "vegetarian",        r"\bvegetarians?\b|\bveggie\b", "identity"),
    Rule("dietary", "vegetarian",        r"\b(?:never|don'?t|do not|won'?t|can'?t) eat (?:any )?meat\b|\bmeat[- ]free\b", "fixed"),
    Rule("dietary", "vegetarian",        r"\bnon[- ]?meat\b|\bmeatless\b|\bplant[- ]based\b", "identity"),
    Rule("dietary", "pescatarian",       r"\bpesc[ae]tarians?\b|\bonly eat fish\b", "identity"),
    Rule("dietary", "halal",             r"\bhalal\b", "identity"),
    Rule("dietary", "kosher",            r"\bkosher\b", "identity"),
    Rule("dietary", "gluten_free",       r"\bgluten[- ]free\b|\bc(?:o)?eliac\b|\bgluten intoleran\w*", "identity"),
    Rule("dietary", "dairy_free",        r"\bdairy[- ]free\b|\blactose[- ]intoleran\w*", "identity"),
    Rule("dietary", "dairy_free",        r"\b(?:no|can'?t (?:have|eat)|don'?t (?:eat|do)|doesn'?t (?:eat|do)) dairy\b", "fixed"),
    Rule("dietary", "nut_free",          r"\bnut[- ]free\b|\bnut allerg\w*|\ballergic to (?:pea)?nuts\b", "identity"),
    # seat (scalar)
    Rule("seat", "window",               r"\bwindow seats?\b|\bby the window\b"),
    Rule("seat", "aisle",                r"\baisle(?: seats?)?\b"),
    # cabinClass (scalar); premium economy before economy: a matched span is used once
    Rule("cabinClass", "premium_economy", r"\bpremium(?:[- ]economy\b|\s+(?:class|cabin|seats?|seating)\b)"),
    Rule("cabinClass", "economy",        r"\beconomy\b|\bcoach (?:class|seats?|tickets?|fares?)\b|\bmain cabin\b"),
    Rule("cabinClass", "business",       r"\bbusiness[- ](?:class|seats?|seating|cabin|flights?|tickets?|fares?)\b|\b(?:fly|flies|flying|in|travel(?:l?ing|s)?) business\b|\bbusiness(?=\s+(?:or|and|of|/)\s+(?:economy|premium|first|coach))"),
    Rule("cabinClass", "first",          r"\bfirst[- ]class\b|\bfly(?:ing)? first\b"),
    # accommodation (scalar)
    Rule("accommodation", "bed_and_breakfast", r"\bb ?& ?bs?\b|\bbed and breakfasts?\b|\bguest ?houses?\b"),
    Rule("accommodation", "hostel",      r"\bhostels?\b"),
    Rule("accommodation", "apartment",   r"\bapartments?\b|\bairbnbs?\b|\b(?:holiday|vacation) rentals?\b|\b(?:a |the )?houses?(?! of)\b|\bcondos?\b|\bvillas?\b|\bcottages?\b|\bcabins? (?:to stay|for rent)\b|\bhousing\b|\brent(?:al)? (?:a |an )?(?:home|place|flat)\b|\bflats? to (?:stay|rent)\b"),
    Rule("accommodation", "resort",      r"\bresorts?\b|\ball[- ]inclusive\b"),
    Rule("accommodation", "camping",     r"\bcamping\b|\bcampsites?\b"),
    Rule("accommodation", "hotel",       r"\bhotels?\b|\bmotels?\b|\b(?:a|one|\d|two|three|four) (?:hotel )?rooms?\b"),
    # budget level (scalar): price words of restaurants and hotels. "not very costly" is a
    # moderate price, read before "costly" (a matched span is used once).
    Rule("budget", LUXURY,               r"\babove[- ]average" + PRICED + r"\b", confidence=0.6),
    Rule("budget", MID_RANGE,            r"\bnot (?:very |too |that |so |overly |super )?(?:costly|expensive|pricey|pricy)" + PRICED + r"\b|\b(?:not|don'?t want|nothing|no)\b(?:\s+\S+){0,4}?\s+too (?:expensive|costly|pricey|pricy|extravagant|fancy|upscale)\b", confidence=0.6),
    Rule("budget", BUDGET,               r"\b(?:cheap(?:ly)?|inexpensive|low(?:er)?[- ](?:cost|priced?|end)|bargain|budget[- ]friendly|budget(?= (?:priced|price|hotel|restaurant|option|place|airline|stay)))" + PRICED + r"\b|\bas cheap as possible\b", confidence=0.6),
    Rule("budget", BUDGET,               r"\bon a (?:tight |shoestring |strict |limited )?budget\b|\bbackpacking\b|\bbudget travel(?:l?ers?)?\b", "identity", confidence=0.6),
    Rule("budget", MID_RANGE,            r"\b(?:moderate(?:ly)?|mid[- ]?range|mid[- ]priced|medium[- ]priced|reasonabl[ey]|aff?or?a?dabl[ey]|economical(?:ly)?|intermediate)" + PRICED + r"\b|\b(?:average|fair(?:ly)?|decent(?:ly)?)[- ]pric(?:ed|es?|ing)\b|\bmoderate budget\b", confidence=0.6),
    Rule("budget", LUXURY,               r"\b(?:(?:very |really |quite |kind of |a (?:little|bit) )?(?:more )?(?:expensive|costly|pricey|pricy|fancy|upscale|up[- ]?market|high[- ]end|ritzy|lavish|extravagant|luxury|luxurious|posh|swanky|top[- ]end))" + PRICED + r"\b|\bsplurge\b|\bmoney is no object\b", confidence=0.6),
    # interests (list): a liking, or a request to visit the place
    Rule("interests", "museums",         r"\bmuseums?\b|\b(?:art )?galler(?:y|ies)\b|\bexhibitions?\b", "interest"),
    Rule("interests", "history",         r"\bhistory\b|\bhistoric(?:al)?(?: (?:sites?|spots?|landmarks?|places?|buildings?|monuments?|attractions?))?\b|\blandmarks?\b|\bmonuments?\b|\bcastles?\b|\bruins\b", "interest"),
    Rule("interests", "shopping",        r"\bshopping(?: (?:areas?|districts?|centers?|centres?|streets?|malls?))?\b|\b(?:a |the )?malls?\b|\bmarkets?\b", "interest"),
    Rule("interests", "nature",          r"\b(?:national |state )?parks?\b|\bnature(?: (?:preserves?|reserves?|trails?))?\b|\bgardens?\b|\bwildlife\b|\bzoos?\b", "interest"),
    Rule("interests", "theme_parks",     r"\btheme parks?\b|\bamusement parks?\b|\bwater parks?\b", "interest"),
    Rule("interests", "hiking",          r"\bhik(?:e|es|ing)\b|\btrekking\b", "interest"),
    Rule("interests", "beaches",         r"\bbeach(?:es)?\b", "interest"),
    Rule("interests", "food",            r"\bfoodies?\b|\bfood (?:tours?|markets?|scene)\b|\bculinary\b|\bcooking class(?:es)?\b|\b(?:good|great|local|street) food\b", "liking"),
    Rule("interests", "nightlife",       r"\bnightlife\b|\bclubbing\b|\bbars\b", "liking"),
    Rule("interests", "architecture",    r"\barchitecture\b", "interest"),
    Rule("interests", "wine",            r"\bwines?\b|\bvineyards?\b|\bwineries\b|\bwine tasting\b", "interest"),
    Rule("interests", "skiing",          r"\bski(?:ing)?\b|\bsnowboard(?:ing)?\b", "interest"),
    Rule("interests", "sports",          r"\bsports?\b|\bbaseball\b|\bbasketball\b|\bfootball\b|\bsoccer\b|\bhockey\b", "liking"),
    Rule("interests", "music",           r"\bconcerts?\b|\blive music\b|\bmusic\b|\bopera\b", "liking"),
    # avoid (list)
    Rule("avoid", "red_eye_flights",     r"\bred[- ]?eyes?(?: flights?)?\b|\bovernight flights?\b", "aversion"),
    Rule("avoid", "layovers",            r"\blayovers?\b|\bconnections\b|\bstopovers?\b", "aversion"),
    Rule("avoid", "layovers",            r"\bdirect flights? only\b|\bonly direct flights?\b|\bnon-?stop only\b", "fixed"),
    Rule("avoid", "layovers",            r"\b(?:direct|non-?stop) (?:flights?|ones?)\b|\bflights? that (?:is|are) (?:direct|non-?stop)\b|\b(?:no|zero|without(?: any)?) stops\b"),
    Rule("avoid", "crowds",              r"\bcrowds?\b|\bcrowded\b|\btourist traps?\b", "aversion"),
    Rule("avoid", "early_flights",       r"\bearly (?:morning )?flights?\b", "aversion"),
)
# fmt: on

STAR_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5}
STARS = re.compile(r"\b(?P<stars>[1-5]|one|two|three|four|five)(?:\.0)?[- ]?stars?\b")
STAY = re.compile(r"\bhotels?\b|\bresorts?\b|\bmotels?\b|\brooms?\b|\bplace to stay\b|\baccommodations?\b|\bstay\b")
"""A star rating counts as a hotel class only where the clause speaks of a stay."""

CITY_AIRPORTS: dict[str, str] = {
    # The largest airports' cities as travellers name them -> the IATA code of the airport
    # (or, for a city several airports serve, of the city: NYC, LON, PAR, TYO, CHI, WAS).
    "atlanta": "ATL", "atl": "ATL",
    "los angeles": "LAX", "la": "LAX", "l.a.": "LAX",
    "san francisco": "SFO", "sf": "SFO", "san fran": "SFO", "frisco": "SFO",
    "new york": "NYC", "new york city": "NYC", "ny": "NYC", "nyc": "NYC",
    "chicago": "CHI", "chi-town": "CHI", "washington": "WAS", "washington dc": "WAS", "washington d.c.": "WAS", "dc": "WAS",
    "dallas": "DFW", "denver": "DEN", "seattle": "SEA", "las vegas": "LAS", "vegas": "LAS",
    "orlando": "MCO", "miami": "MIA", "phoenix": "PHX", "houston": "IAH", "boston": "BOS",
    "minneapolis": "MSP", "detroit": "DTW", "philadelphia": "PHL", "philly": "PHL", "charlotte": "CLT",
    "san diego": "SAN", "portland": "PDX", "salt lake city": "SLC", "nashville": "BNA", "austin": "AUS",
    "san jose": "SJC", "sacramento": "SMF", "new orleans": "MSY", "honolulu": "HNL", "baltimore": "BWI",
    "toronto": "YYZ", "vancouver": "YVR", "montreal": "YUL", "mexico city": "MEX", "cdmx": "MEX",
    "london": "LON", "paris": "PAR", "tokyo": "TYO", "dubai": "DXB", "amsterdam": "AMS",
    "frankfurt": "FRA", "istanbul": "IST", "madrid": "MAD", "barcelona": "BCN", "rome": "ROM",
    "munich": "MUC", "lisbon": "LIS", "dublin": "DUB", "zurich": "ZRH", "singapore": "SIN",
    "hong kong": "HKG", "seoul": "SEL", "sydney": "SYD", "melbourne": "MEL", "delhi": "DEL",
    "new delhi": "DEL", "mumbai": "BOM", "bangkok": "BKK", "kuala lumpur": "KUL", "kl": "KUL",
    "beijing": "BJS", "shanghai": "SHA", "doha": "DOH", "sao paulo": "SAO", "são paulo": "SAO",
}  # fmt: skip

AIRLINES: dict[str, str] = {
    # How travellers name an airline -> its normalised value. Names that are also ordinary
    # words ("united", "american", "alaska", "southwest", "spirit", "frontier") need the
    # word "airlines" or a flying verb before them (extract.py's AIRLINE pattern).
    "delta": "delta", "united": "united", "american": "american", "southwest": "southwest",
    "alaska": "alaska", "jetblue": "jetblue", "jet blue": "jetblue", "spirit": "spirit",
    "frontier": "frontier", "hawaiian": "hawaiian", "allegiant": "allegiant", "sun country": "sun_country",
    "air canada": "air_canada", "westjet": "westjet", "british airways": "british_airways", "ba": "british_airways",
    "lufthansa": "lufthansa", "air france": "air_france", "klm": "klm", "emirates": "emirates",
    "qatar": "qatar_airways", "qatar airways": "qatar_airways", "etihad": "etihad", "turkish": "turkish_airlines",
    "singapore": "singapore_airlines", "cathay pacific": "cathay_pacific", "qantas": "qantas", "ryanair": "ryanair",
    "easyjet": "easyjet", "easy jet": "easyjet", "iberia": "iberia", "virgin atlantic": "virgin_atlantic",
    "aeromexico": "aeromexico", "ana": "ana", "jal": "jal", "japan airlines": "jal", "swiss": "swiss",
    "norwegian": "norwegian", "wizz air": "wizz_air", "aer lingus": "aer_lingus", "tap": "tap_air_portugal",
}  # fmt: skip
AIRLINES_NEEDING_CONTEXT = frozenset(
    {"united", "american", "alaska", "southwest", "spirit", "frontier", "hawaiian", "singapore", "turkish", "swiss",
     "norwegian", "qatar", "ana", "jal", "tap", "ba"}
)  # fmt: skip
