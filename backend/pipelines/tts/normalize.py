"""Written text -> the words a person would say, before G2P: numbers, money, times, dates, units, URLs.

The phonemiser's own number reading is never relied on (phonemizer-fork reads "1,234" as "one,
two hundred thirty four" and "$12.50" as "dollar twelve.fifty"): every digit, currency sign and
address is rewritten into words here, per language (Kokoro's one-letter codes, see g2p.LANGUAGES).
Numbers are spelled by num2words where it covers the language (en, es, fr, it, pt); Hindi, which
num2words 0.5.14 does not cover, has its own small speller (0..99 are irregular, then Indian
grouping: hazaar, lakh, crore). `normalize(text, code)` is pure and deterministic.

Rules run in a fixed order, each on what the earlier ones left: addresses (URLs, e-mail) first,
as they hold dots and digits; then times, dates, money, percentages, units, ordinals, ranges,
plain numbers; abbreviations and symbols last.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from num2words import num2words

# Kokoro language code -> num2words language; None = spelled here (Hindi).
NUM2WORDS_LANG = {"a": "en", "b": "en", "e": "es", "f": "fr", "i": "it", "p": "pt_BR", "h": None}
LONGEST_NUMBER_DIGITS = 15
# Abbreviations that often end a sentence: there their period stays, as the sentence's stop.
MAY_END_SENTENCE = frozenset({"etc.", "Inc.", "Ltd.", "Co.", "Corp.", "ecc.", "aprox.", "approx."})  # longer digit runs (card numbers, ids) are read digit by digit


@dataclass(frozen=True)
class Words:
    """What one language calls the pieces a written number or address is made of."""

    point: str                       # decimal separator, spoken
    decimal_comma: bool              # "3,5" is three and a half (not a list), "1.000" is a thousand
    minus: str
    percent: str
    to: str                          # ranges: "10-20"
    and_: str                        # money: "five dollars and ten cents"
    dot: str
    at: str
    slash: str
    dash: str
    underscore: str
    colon: str
    plus: str
    times: str
    equals: str
    number: str                      # "#5", "No. 5"
    degrees: tuple[str, str]
    letters: dict[str, str]          # how a spelled-out letter is written so the G2P says its name
    currencies: dict[str, tuple[str, str, str, str]]  # sign -> unit, units, subunit, subunits
    units: dict[str, tuple[str, str]]                  # symbol -> singular, plural
    abbreviations: dict[str, str]                      # "etc." -> "et cetera" (matched case-sensitively)
    months: tuple[str, ...]
    scales: dict[str, str] = field(default_factory=dict)  # "million", "bn" -> spoken scale word


_EN_LETTERS = {"a": "ay", "b": "bee", "c": "see", "d": "dee", "e": "ee", "f": "eff", "g": "gee", "h": "aitch",
               "i": "eye", "j": "jay", "k": "kay", "l": "el", "m": "em", "n": "en", "o": "oh", "p": "pee", "q": "cue",
               "r": "ar", "s": "ess", "t": "tee", "u": "you", "v": "vee", "w": "double you", "x": "ex", "y": "why",
               "z": "zee"}
_EN_UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "mi": ("mile", "miles"), "ft": ("foot", "feet"), "yd": ("yard", "yards"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"), "t": ("tonne", "tonnes"),
    "l": ("liter", "liters"), "L": ("liter", "liters"), "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"), "mph": ("mile per hour", "miles per hour"),
    "m/s": ("meter per second", "meters per second"), "h": ("hour", "hours"), "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"), "min": ("minute", "minutes"), "s": ("second", "seconds"), "sec": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"), "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"), "V": ("volt", "volts"), "mA": ("milliamp", "milliamps"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
}
_GB_UNITS = {key: tuple(w.replace("meter", "metre").replace("liter", "litre") for w in value)
             for key, value in _EN_UNITS.items()}
_EN_ABBREVIATIONS = {
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor", "Jr.": "Junior", "Sr.": "Senior",
    "vs.": "versus", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "approx.": "approximately",
    "Mt.": "Mount", "Ave.": "Avenue", "Rd.": "Road", "Blvd.": "Boulevard", "Dept.": "Department",
    "Inc.": "Incorporated", "Ltd.": "Limited", "Co.": "Company", "Corp.": "Corporation", "Jan.": "January",
    "Feb.": "February", "Mar.": "March", "Apr.": "April", "Aug.": "August", "Sept.": "September",
    "Sep.": "September", "Oct.": "October", "Nov.": "November", "Dec.": "December",
    "a.m.": "ay em", "p.m.": "pee em", "A.M.": "ay em", "P.M.": "pee em",
}
_EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")
_EN_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "US$": ("dollar", "dollars", "cent", "cents"),
                  "€": ("euro", "euros", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
                  "¥": ("yen", "yen", "", ""), "₹": ("rupee", "rupees", "paisa", "paise"),
                  "R$": ("real", "reais", "centavo", "centavos")}

ENGLISH = Words(
    point="point", decimal_comma=False, minus="minus", percent="percent", to="to", and_="and", dot="dot", at="at",
    slash="slash", dash="dash", underscore="underscore", colon="colon", plus="plus", times="times", equals="equals",
    number="number", degrees=("degree", "degrees"), letters=_EN_LETTERS, currencies=_EN_CURRENCIES,
    units=_EN_UNITS, abbreviations=_EN_ABBREVIATIONS, months=_EN_MONTHS,
    scales={"thousand": "thousand", "million": "million", "billion": "billion", "trillion": "trillion",
            "k": "thousand", "K": "thousand", "m": "million", "M": "million", "mn": "million", "bn": "billion",
            "B": "billion", "tn": "trillion"},
)
BRITISH = Words(**{**ENGLISH.__dict__, "units": _GB_UNITS, "letters": {**_EN_LETTERS, "z": "zed"}})


def _romance_units(km: tuple[str, str], m: tuple[str, str], cm: tuple[str, str], mm: tuple[str, str],
                   kg: tuple[str, str], g: tuple[str, str], litre: tuple[str, str], ml: tuple[str, str],
                   hour: tuple[str, str], minute: tuple[str, str], second: tuple[str, str],
                   per_hour: str, byte: str, celsius: str) -> dict[str, tuple[str, str]]:
    units = {"km": km, "m": m, "cm": cm, "mm": mm, "kg": kg, "g": g, "l": litre, "L": litre, "ml": ml, "mL": ml,
             "h": hour, "min": minute, "s": second, "km/h": (f"{km[0]} {per_hour}", f"{km[1]} {per_hour}"),
             "°C": (celsius, celsius)}
    for prefix, name in (("K", "kilo"), ("k", "kilo"), ("M", "mega"), ("G", "giga"), ("T", "tera")):
        units[f"{prefix}B"] = (f"{name}{byte}", f"{name}{byte}s")
    return units


SPANISH = Words(
    point="coma", decimal_comma=True, minus="menos", percent="por ciento", to="a", and_="con", dot="punto",
    at="arroba", slash="barra", dash="guion", underscore="guion bajo", colon="dos puntos", plus="más",
    times="por", equals="igual a", number="número", degrees=("grado", "grados"), letters={},
    currencies={"$": ("dólar", "dólares", "centavo", "centavos"), "€": ("euro", "euros", "céntimo", "céntimos"),
                "£": ("libra", "libras", "penique", "peniques"), "¥": ("yen", "yenes", "", ""),
                "R$": ("real", "reales", "centavo", "centavos"), "₹": ("rupia", "rupias", "paisa", "paisas")},
    units=_romance_units(("kilómetro", "kilómetros"), ("metro", "metros"), ("centímetro", "centímetros"),
                         ("milímetro", "milímetros"), ("kilogramo", "kilogramos"), ("gramo", "gramos"),
                         ("litro", "litros"), ("mililitro", "mililitros"), ("hora", "horas"), ("minuto", "minutos"),
                         ("segundo", "segundos"), "por hora", "byte", "grados Celsius"),
    abbreviations={"Sr.": "señor", "Sra.": "señora", "Srta.": "señorita", "Dr.": "doctor", "Dra.": "doctora",
                   "Ud.": "usted", "Uds.": "ustedes", "etc.": "etcétera", "pág.": "página", "núm.": "número",
                   "aprox.": "aproximadamente", "p. ej.": "por ejemplo", "EE. UU.": "Estados Unidos",
                   "EE.UU.": "Estados Unidos"},
    months=("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
            "noviembre", "diciembre"),
    scales={"mil": "mil", "millón": "millón", "millones": "millones", "M": "millones"},
)
FRENCH = Words(
    point="virgule", decimal_comma=True, minus="moins", percent="pour cent", to="à", and_="et", dot="point",
    at="arobase", slash="barre oblique", dash="tiret", underscore="tiret bas", colon="deux-points", plus="plus",
    times="fois", equals="égale", number="numéro", degrees=("degré", "degrés"), letters={},
    currencies={"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "centime", "centimes"),
                "£": ("livre", "livres", "penny", "pence"), "¥": ("yen", "yens", "", ""),
                "R$": ("réal", "réaux", "centavo", "centavos"), "₹": ("roupie", "roupies", "paisa", "paisas")},
    units=_romance_units(("kilomètre", "kilomètres"), ("mètre", "mètres"), ("centimètre", "centimètres"),
                         ("millimètre", "millimètres"), ("kilogramme", "kilogrammes"), ("gramme", "grammes"),
                         ("litre", "litres"), ("millilitre", "millilitres"), ("heure", "heures"),
                         ("minute", "minutes"), ("seconde", "secondes"), "à l'heure", "octet", "degrés Celsius"),
    abbreviations={"M.": "Monsieur", "MM.": "Messieurs", "Mme": "Madame", "Mmes": "Mesdames", "Mlle": "Mademoiselle",
                   "Dr": "Docteur", "Pr": "Professeur", "etc.": "et cetera", "p. ex.": "par exemple",
                   "env.": "environ", "St": "Saint", "Ste": "Sainte", "av.": "avenue", "bd": "boulevard"},
    months=("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
            "novembre", "décembre"),
    scales={"mille": "mille", "million": "million", "millions": "millions", "milliard": "milliard",
            "milliards": "milliards", "M": "millions", "Md": "milliards"},
)
ITALIAN = Words(
    point="virgola", decimal_comma=True, minus="meno", percent="per cento", to="a", and_="e", dot="punto",
    at="chiocciola", slash="barra", dash="trattino", underscore="trattino basso", colon="due punti", plus="più",
    times="per", equals="uguale", number="numero", degrees=("grado", "gradi"), letters={},
    currencies={"$": ("dollaro", "dollari", "centesimo", "centesimi"), "€": ("euro", "euro", "centesimo", "centesimi"),
                "£": ("sterlina", "sterline", "penny", "pence"), "¥": ("yen", "yen", "", ""),
                "R$": ("real", "real", "centavo", "centavos"), "₹": ("rupia", "rupie", "paisa", "paisa")},
    units=_romance_units(("chilometro", "chilometri"), ("metro", "metri"), ("centimetro", "centimetri"),
                         ("millimetro", "millimetri"), ("chilogrammo", "chilogrammi"), ("grammo", "grammi"),
                         ("litro", "litri"), ("millilitro", "millilitri"), ("ora", "ore"), ("minuto", "minuti"),
                         ("secondo", "secondi"), "orari", "byte", "gradi Celsius"),
    abbreviations={"Sig.": "signor", "Sig.ra": "signora", "Sigg.": "signori", "Dott.": "dottor",
                   "Dott.ssa": "dottoressa", "Prof.": "professor", "Prof.ssa": "professoressa", "ecc.": "eccetera",
                   "etc.": "eccetera", "es.": "esempio", "pag.": "pagina", "n.": "numero", "ca.": "circa"},
    months=("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre", "ottobre",
            "novembre", "dicembre"),
    scales={"mila": "mila", "milione": "milione", "milioni": "milioni", "miliardi": "miliardi", "mln": "milioni",
            "mld": "miliardi"},
)
PORTUGUESE = Words(
    point="vírgula", decimal_comma=True, minus="menos", percent="por cento", to="a", and_="e", dot="ponto",
    at="arroba", slash="barra", dash="hífen", underscore="sublinhado", colon="dois pontos", plus="mais",
    times="vezes", equals="igual a", number="número", degrees=("grau", "graus"), letters={},
    currencies={"$": ("dólar", "dólares", "centavo", "centavos"), "€": ("euro", "euros", "cêntimo", "cêntimos"),
                "£": ("libra", "libras", "pêni", "pence"), "¥": ("iene", "ienes", "", ""),
                "R$": ("real", "reais", "centavo", "centavos"), "₹": ("rupia", "rupias", "paisa", "paisas")},
    units=_romance_units(("quilômetro", "quilômetros"), ("metro", "metros"), ("centímetro", "centímetros"),
                         ("milímetro", "milímetros"), ("quilograma", "quilogramas"), ("grama", "gramas"),
                         ("litro", "litros"), ("mililitro", "mililitros"), ("hora", "horas"), ("minuto", "minutos"),
                         ("segundo", "segundos"), "por hora", "byte", "graus Celsius"),
    abbreviations={"Sr.": "senhor", "Sra.": "senhora", "Srta.": "senhorita", "Dr.": "doutor", "Dra.": "doutora",
                   "etc.": "et cetera", "pág.": "página", "nº": "número", "n.º": "número", "aprox.": "aproximadamente",
                   "Av.": "avenida", "V.Exa.": "vossa excelência"},
    months=("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro",
            "novembro", "dezembro"),
    scales={"mil": "mil", "milhão": "milhão", "milhões": "milhões", "bilhão": "bilhão", "bilhões": "bilhões",
            "mi": "milhões", "bi": "bilhões"},
)
HINDI = Words(
    point="दशमलव", decimal_comma=False, minus="ऋण", percent="प्रतिशत", to="से", and_="और", dot="डॉट", at="ऐट",
    slash="स्लैश", dash="डैश", underscore="अंडरस्कोर", colon="कोलन", plus="प्लस", times="गुणा", equals="बराबर",
    number="नंबर", degrees=("डिग्री", "डिग्री"), letters={},
    currencies={"₹": ("रुपया", "रुपये", "पैसा", "पैसे"), "$": ("डॉलर", "डॉलर", "सेंट", "सेंट"),
                "€": ("यूरो", "यूरो", "सेंट", "सेंट"), "£": ("पाउंड", "पाउंड", "पेनी", "पेंस"), "¥": ("येन", "येन", "", "")},
    units={"km": ("किलोमीटर", "किलोमीटर"), "m": ("मीटर", "मीटर"), "cm": ("सेंटीमीटर", "सेंटीमीटर"),
           "kg": ("किलोग्राम", "किलोग्राम"), "g": ("ग्राम", "ग्राम"), "l": ("लीटर", "लीटर"), "L": ("लीटर", "लीटर"),
           "km/h": ("किलोमीटर प्रति घंटा", "किलोमीटर प्रति घंटा"), "°C": ("डिग्री सेल्सियस", "डिग्री सेल्सियस"),
           "GB": ("जीबी", "जीबी"), "MB": ("एमबी", "एमबी")},
    abbreviations={"डॉ.": "डॉक्टर", "Dr.": "डॉक्टर"},
    months=("जनवरी", "फ़रवरी", "मार्च", "अप्रैल", "मई", "जून", "जुलाई", "अगस्त", "सितंबर", "अक्टूबर", "नवंबर", "दिसंबर"),
    scales={"हज़ार": "हज़ार", "लाख": "लाख", "करोड़": "करोड़"},
)
_AMPERSAND = {"a": "and", "b": "and", "e": "y", "f": "et", "i": "e", "p": "e", "h": "और"}
WORDS = {"a": ENGLISH, "b": BRITISH, "e": SPANISH, "f": FRENCH, "i": ITALIAN, "p": PORTUGUESE, "h": HINDI}

# --- Hindi numbers (num2words 0.5.14 has no Hindi) ----------------------------------------------------
_HI_0_99 = (
    "शून्य एक दो तीन चार पाँच छह सात आठ नौ दस ग्यारह बारह तेरह चौदह पंद्रह सोलह सत्रह अठारह उन्नीस "
    "बीस इक्कीस बाईस तेईस चौबीस पच्चीस छब्बीस सत्ताईस अट्ठाईस उनतीस तीस इकतीस बत्तीस तैंतीस चौंतीस पैंतीस छत्तीस "
    "सैंतीस अड़तीस उनतालीस चालीस इकतालीस बयालीस तैंतालीस चवालीस पैंतालीस छियालीस सैंतालीस अड़तालीस उनचास पचास "
    "इक्यावन बावन तिरपन चौवन पचपन छप्पन सत्तावन अट्ठावन उनसठ साठ इकसठ बासठ तिरसठ चौंसठ पैंसठ छियासठ सड़सठ "
    "अड़सठ उनहत्तर सत्तर इकहत्तर बहत्तर तिहत्तर चौहत्तर पचहत्तर छिहत्तर सतहत्तर अठहत्तर उन्यासी अस्सी इक्यासी बयासी "
    "तिरासी चौरासी पचासी छियासी सत्तासी अट्ठासी नवासी नब्बे इक्यानबे बानबे तिरानबे चौरानबे पचानबे छियानबे सत्तानबे "
    "अट्ठानबे निन्यानबे").split()
_HI_SCALES = ((10**7, "करोड़"), (10**5, "लाख"), (1000, "हज़ार"), (100, "सौ"))


def hindi_cardinal(number: int) -> str:
    """An integer in Hindi words with Indian grouping (1,00,000 = एक लाख)."""
    if number < 100:
        return _HI_0_99[number]
    words = []
    for size, name in _HI_SCALES:
        if number >= size:
            count, number = divmod(number, size)
            words.append(f"{hindi_cardinal(count)} {name}")
    if number:
        words.append(_HI_0_99[number])
    return " ".join(words)


# --- spelling numbers ------------------------------------------------------------------------------
def cardinal(number: int, code: str) -> str:
    """An integer in words; num2words' commas are dropped (they would be read as pauses)."""
    if code == "h":
        return ("ऋण " if number < 0 else "") + hindi_cardinal(abs(number))
    words = num2words(number, lang=NUM2WORDS_LANG[code]).replace(",", "")
    if code == "a":
        words = words.replace(" and ", " ")  # American: "two hundred thirty-four"
    return words


def ordinal(number: int, code: str, feminine: bool = False) -> str:
    if code == "h":
        return cardinal(number, code)
    words = num2words(number, lang=NUM2WORDS_LANG[code], to="ordinal").replace(",", "")
    if code == "a":
        words = words.replace(" and ", " ")
    if feminine and code in ("e", "i", "p"):
        words = " ".join(w[:-1] + "a" if w.endswith("o") else w for w in words.split())
    if feminine and code == "f" and number == 1:
        words = "première"
    return words


def year(number: int, code: str) -> str:
    """A year as said in English ("nineteen ninety-nine", "twenty twenty-four"); other languages say the number."""
    if code not in ("a", "b") or not 1000 <= number <= 2099:
        return cardinal(number, code)
    words = num2words(number, lang="en", to="year").replace(",", "")
    return words.replace(" and ", " ") if code == "a" else words


def digits(text: str, code: str) -> str:
    """Digit by digit: "007" -> "zero zero seven"."""
    return " ".join(cardinal(int(d), code) for d in text if d.isdigit())


def decimal(whole: str, fraction: str, code: str) -> str:
    """'3', '14' -> "three point one four" (English); "tres coma catorce" (two digits or fewer, no leading zero)."""
    words = WORDS[code]
    head = cardinal(int(whole or "0"), code)
    if code not in ("a", "b", "h") and len(fraction) <= 2 and not fraction.startswith("0"):
        return f"{head} {words.point} {cardinal(int(fraction), code)}"
    return f"{head} {words.point} {digits(fraction, code)}"


def number_words(text: str, code: str) -> str:
    """A written number (separators per language) in words: '1,234.5' (en) or '1.234,5' (es)."""
    words = WORDS[code]
    text = text.replace("\u202f", "").replace("\u00a0", "").replace(" ", "")
    negative = text[:1] in "-−"
    text = text.lstrip("-−")
    if words.decimal_comma:
        if re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", text):
            text = text.replace(".", "")
        whole, _, fraction = text.partition(",")
        if not fraction and "." in whole:  # "3.5" in a comma-decimal language: a point after all
            whole, _, fraction = whole.partition(".")
    else:
        whole, _, fraction = text.replace(",", "").partition(".")
    if len(whole) > LONGEST_NUMBER_DIGITS:
        spoken = digits(whole, code) + (f" {words.point} {digits(fraction, code)}" if fraction else "")
    elif fraction:
        spoken = decimal(whole, fraction, code)
    elif len(whole) > 1 and whole.startswith("0"):
        spoken = digits(whole, code)
    else:
        spoken = cardinal(int(whole), code)
    return f"{words.minus} {spoken}" if negative else spoken


def _is_one(text: str) -> bool:
    return text.strip().lstrip("+") in ("1", "1.0", "1,0")


def _plural(forms: tuple[str, str], amount: str, code: str) -> str:
    one = _is_one(amount) or (code == "f" and amount.strip() in ("0", "0,5"))
    return forms[0] if one else forms[1]


# --- patterns -------------------------------------------------------------------------------------
def _number_pattern(words: Words) -> str:
    """A written number in this language: grouped thousands, decimals, a sign."""
    if words.decimal_comma:
        return r"[-−]?(?:\d{1,3}(?:[.\u202f\u00a0 ]\d{3})+(?:,\d+)?|\d+(?:[,.]\d+)?)"
    if words is HINDI:  # Indian grouping as well: 1,50,000
        return r"[-−]?(?:\d{1,2}(?:,\d{2})+,\d{3}(?:\.\d+)?|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    return r"[-−]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"


_TRAILING_PUNCT = ".,;:!?)]}'\""
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|"
                  r"io|dev|ai|app|co|uk|de|fr|es|it|pt|br|in|jp|eu|info|biz|me|tv)\b(?:/[^\s<>\"]*)?", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+\b", re.IGNORECASE)
_SPOKEN_TLDS = {"com", "org", "net", "edu", "gov", "info", "biz", "app", "dev"}
_VOWELS = set("aeiouy")


def _spell(word: str, words: Words) -> str:
    return " ".join(words.letters.get(ch.lower(), ch.upper()) if ch.isalpha() else ch for ch in word)


def _address_part(part: str, words: Words, code: str, tld: bool = False) -> str:
    """One label of a host or path: a word, letters (bbc, io), or digits."""
    spoken = []
    for token in re.findall(r"[^\W\d_]+|\d+", part):
        if token.isdigit():
            spoken.append(cardinal(int(token), code) if len(token) <= 4 and not token.startswith("0")
                          else digits(token, code))
        elif tld and token.lower() not in _SPOKEN_TLDS:
            spoken.append(_spell(token, words))
        elif len(token) <= 4 and not (_VOWELS & set(token.lower())) or (len(token) == 1):
            spoken.append(_spell(token, words))
        else:
            spoken.append(token.lower())
    return " ".join(spoken)


_SEPARATORS = {".": "dot", "/": "slash", "-": "dash", "_": "underscore", ":": "colon", "@": "at", "+": "plus",
               "=": "equals", "&": "and_", "?": "", "#": "number", "~": ""}
_ADDRESS_SPLIT = re.compile(r"([./\-_:@+=&?#~])")


def _address(text: str, words: Words, code: str, host_end: int | None = None) -> str:
    """An address read aloud: labels and the separators between them ("example dot com slash docs").

    host_end is where the host name ends: its last label is the top-level domain (spelled unless spoken
    as a word, like com or org)."""
    tld_index = None
    if host_end is not None and "." in text[:host_end]:
        tld_index = len([p for p in _ADDRESS_SPLIT.split(text[:host_end]) if p and p not in _SEPARATORS]) - 1
    out: list[str] = []
    index = 0
    for piece in _ADDRESS_SPLIT.split(text):
        if not piece:
            continue
        if piece in _SEPARATORS:
            name = _SEPARATORS[piece]
            if name:
                out.append(getattr(words, name))
            continue
        out.append(_address_part(piece, words, code, tld=index == tld_index))
        index += 1
    return " ".join(w for w in out if w)


def _url(match: re.Match, words: Words, code: str) -> str:
    url = match.group(0)
    tail = ""
    while url and url[-1] in _TRAILING_PUNCT:
        tail, url = url[-1] + tail, url[:-1]
    url = re.sub(r"^https?://", "", url, flags=re.IGNORECASE).rstrip("/")
    host_end = len(url.split("/", 1)[0].split(":", 1)[0])
    return f" {_address(url, words, code, host_end)} {tail}".rstrip() + (" " if tail else "")


def _email(match: re.Match, words: Words, code: str) -> str:
    local, _, domain = match.group(0).partition("@")
    return f"{_address(local, words, code)} {words.at} {_address(domain, words, code, len(domain))}"


def _time_words(hours: int, minutes: int, seconds: int | None, meridiem: str, code: str) -> str:
    if code in ("a", "b"):
        spoken = cardinal(hours, code)
        if minutes == 0 and not meridiem and seconds is None:
            spoken += " o'clock"
        elif minutes:
            spoken += f" oh {cardinal(minutes, code)}" if minutes < 10 else f" {cardinal(minutes, code)}"
        if seconds:
            spoken += f" and {cardinal(seconds, code)} {'second' if seconds == 1 else 'seconds'}"
        if meridiem:
            spoken += " " + ("ay em" if meridiem.lower().startswith("a") else "pee em")
        return spoken
    if code == "h":
        return f"{cardinal(hours, code)} बजकर {cardinal(minutes, code)} मिनट" if minutes else f"{cardinal(hours, code)} बजे"
    hour_words = cardinal(hours, code)
    if code == "e" and hours == 1:
        hour_words = "una"
    if code == "f":
        hour_words = ("une" if hours == 1 else hour_words) + (" heure" if hours == 1 else " heures")
        return hour_words + (f" {cardinal(minutes, code)}" if minutes else "")
    if code == "p" and hours in (1, 2):
        hour_words = ("uma", "duas")[hours - 1]
    joiner = {"e": "y", "i": "e", "p": "e"}[code]
    spoken = hour_words + (f" {joiner} {cardinal(minutes, code)}" if minutes else "")
    if not minutes and code == "e":
        spoken += " en punto"
    return spoken


def _date_words(year_: int | None, month: int, day: int, code: str) -> str:
    words = WORDS[code]
    name = words.months[month - 1]
    y = f" {year(year_, code)}" if year_ is not None else ""
    if code == "a":
        return f"{name} {ordinal(day, code)}" + ("," + y if y else "")
    if code == "b":
        return f"the {ordinal(day, code)} of {name}{y}"
    if code == "e":
        return f"{cardinal(day, code) if day != 1 else 'primero'} de {name}" + (f" de{y}" if y else "")
    if code == "p":
        return f"{cardinal(day, code) if day != 1 else 'primeiro'} de {name}" + (f" de{y}" if y else "")
    if code == "f":
        return f"{'premier' if day == 1 else cardinal(day, code)} {name}{y}"
    if code == "i":
        return f"{'primo' if day == 1 else cardinal(day, code)} {name}{y}"
    return f"{cardinal(day, code)} {name}{y}"


def _valid_date(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def _money(sign: str, amount: str, scale: str | None, words: Words, code: str) -> str:
    unit, units, sub, subs = words.currencies[sign]
    if scale:
        return f"{number_words(amount, code)} {words.scales.get(scale, scale)} {units}"
    clean = amount.replace("\u202f", "").replace("\u00a0", "").replace(" ", "")
    if words.decimal_comma:
        if re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", clean):
            clean = clean.replace(".", "")
        whole, _, cents = clean.replace(",", ".").partition(".")
    else:
        whole, _, cents = clean.replace(",", "").partition(".")
    whole_n = int(whole or "0")
    if cents and len(cents) != 2 or not sub:  # 1.5 dollars, or a currency without a subunit (yen)
        if cents:
            return f"{number_words(amount, code)} {units}"
        return f"{cardinal(whole_n, code)} {unit if whole_n == 1 else units}"
    cents_n = int(cents or "0")
    parts = []
    if whole_n or not cents_n:
        parts.append(f"{cardinal(whole_n, code)} {unit if whole_n == 1 else units}")
    if cents_n:
        parts.append(f"{cardinal(cents_n, code)} {sub if cents_n == 1 else subs}")
    return f" {words.and_} ".join(parts)


Rule = tuple[re.Pattern, Callable[[re.Match], str]]


@lru_cache(maxsize=None)
def _rules(code: str) -> tuple[Rule, ...]:
    """The compiled rewrite rules of one language, in the order they apply."""
    words = WORDS[code]
    num = _number_pattern(words)
    english = code in ("a", "b")
    steps: list[Rule] = []

    def add(pattern: str, replace: Callable[[re.Match], str], flags: int = 0) -> None:
        steps.append((re.compile(pattern, flags), replace))

    steps.append((_EMAIL, lambda m: _email(m, words, code)))
    steps.append((_URL, lambda m: _url(m, words, code)))

    # Times: 3:45, 15:30, 3:45 pm, 3pm, 7 a.m.
    meridiem = r"(?:\s?([aApP])\.?\s?[mM]\.?(?![\w]))"
    add(r"\b([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?" + (meridiem + "?" if english else "()") + r"(?!\d)",
        lambda m: _time_words(int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None,
                              (m.group(4) or "") + "m" if m.group(4) else "", code))
    if english:
        add(r"\b(1[0-2]|0?[1-9])" + meridiem, lambda m: _time_words(int(m.group(1)), 0, None, m.group(2) + "m", code))
    if code == "f":  # 15h30, 8 h
        add(r"\b([01]?\d|2[0-3])\s?h\s?([0-5]\d)?\b",
            lambda m: _time_words(int(m.group(1)), int(m.group(2) or 0), None, "", code))

    # Dates: 2024-03-15, 03/15/2024 (US order in en-us, day first elsewhere), "March 15(th), 2024", "15 March".
    add(r"\b(\d{4})-(\d{2})-(\d{2})\b",
        lambda m: _date_words(int(m.group(1)), int(m.group(2)), int(m.group(3)), code)
        if _valid_date(int(m.group(2)), int(m.group(3))) else m.group(0).replace("-", " "))

    def slashed(m: re.Match) -> str:
        a, b, y = int(m.group(1)), int(m.group(2)), m.group(3)
        month, day = (a, b) if code == "a" else (b, a)
        if not _valid_date(month, day):
            month, day = day, month
        if not _valid_date(month, day):
            return m.group(0).replace("/", f" {words.slash} ")
        full_year = int(y) if len(y) == 4 else 2000 + int(y)
        return _date_words(full_year, month, day, code)
    add(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{4}|\d{2})\b", slashed)
    month_names = "|".join(words.months + tuple(m[:3] for m in words.months if len(m) > 3))
    if english:
        month_index = {m.lower(): i + 1 for i, m in enumerate(words.months)}
        month_index.update({m[:3].lower(): i + 1 for i, m in enumerate(words.months)})
        add(rf"\b({month_names})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?",
            lambda m: _date_words(int(m.group(3)) if m.group(3) else None, month_index[m.group(1).lower()],
                                  int(m.group(2)), code) if 1 <= int(m.group(2)) <= 31 else m.group(0))
        add(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({month_names})\b\.?(?:,?\s+(\d{{4}})\b)?",
            lambda m: _date_words(int(m.group(3)) if m.group(3) else None, month_index[m.group(2).lower()],
                                  int(m.group(1)), "b")
            if 1 <= int(m.group(1)) <= 31 else m.group(0))
        # Decades and years: "the 1990s", "in 1999", "since 2010", "1999 AD".
        add(r"\b(1[1-9]|20)(\d)0s\b", lambda m: year(int(m.group(1) + m.group(2) + "0"), code)
            .replace("ty", "ties").replace("hundred", "hundreds") if not m.group(0).endswith("00s")
            else year(int(m.group(0)[:-1]), code) + "s")
        add(r"'(\d)0s\b", lambda m: {"2": "twenties", "3": "thirties", "4": "forties", "5": "fifties", "6": "sixties",
                                     "7": "seventies", "8": "eighties", "9": "nineties", "0": "two thousands",
                                     "1": "tens"}[m.group(1)])
        add(r"\b(1[1-9]\d\d|20\d\d)\s?[-–]\s?(1[1-9]\d\d|20\d\d)\b",  # "1939-1945": a span of years
            lambda m: f"{year(int(m.group(1)), code)} to {year(int(m.group(2)), code)}")
        add(r"(?i)\b(in|since|from|by|until|till|of|year|circa|before|after|during|around|early|late|mid|summer|"
            r"winter|spring|autumn|fall)(\s+)(1[1-9]\d\d|20\d\d)\b(?![,.]\d)",
            lambda m: f"{m.group(1)}{m.group(2)}{year(int(m.group(3)), code)}")
        add(r"\b(1[1-9]\d\d|20\d\d)\s?(AD|BC|BCE|CE)\b",
            lambda m: f"{year(int(m.group(1)), code)} {_spell(m.group(2), words)}")

    # Money: $12.50, €5, £3.20, ¥1000, $1.5 million, $3bn, 12,50 €, 5€.
    signs = "|".join(re.escape(s) for s in sorted(words.currencies, key=len, reverse=True))
    scales = "|".join(re.escape(s) for s in sorted(words.scales, key=len, reverse=True))
    scale_part = rf"(?:\s?({scales})\b)?" if scales else "()"
    add(rf"({signs})\s?({num.replace('[-−]?', '')}){scale_part}",
        lambda m: _money(m.group(1), m.group(2), m.group(3), words, code))
    add(rf"({num.replace('[-−]?', '')}){scale_part}\s?({signs})(?!\w)",
        lambda m: _money(m.group(3), m.group(1), m.group(2), words, code))

    # Percentages.
    add(rf"({num})\s?%", lambda m: f"{number_words(m.group(1), code)} {words.percent}")

    # Units after a number: 5 km, 3.5kg, 20 °C, 100 km/h.
    unit_alternatives = "|".join(re.escape(u) for u in sorted(words.units, key=len, reverse=True))
    add(rf"({num})\s?({unit_alternatives})(?![\w/])",
        lambda m: f"{number_words(m.group(1), code)} {_plural(words.units[m.group(2)], m.group(1), code)}")
    add(rf"({num})\s?°(?![CF])", lambda m: f"{number_words(m.group(1), code)} {_plural(words.degrees, m.group(1), code)}")

    # Ordinals: 21st; 1er, 2e (fr); 1º, 2ª (es, it, pt).
    if english:
        add(r"\b(\d+(?:,\d{3})*)(st|nd|rd|th)\b", lambda m: ordinal(int(m.group(1).replace(",", "")), code))
    elif code == "f":
        add(r"\b(\d+)(er|re|ère|e|ème|eme|ᵉ)\b",
            lambda m: ordinal(int(m.group(1)), code, feminine=m.group(2) in ("re", "ère")))
    elif code in ("e", "i", "p"):
        add(r"\b(\d+)\.?([ºª°])(?!\s?[CF]\b)", lambda m: ordinal(int(m.group(1)), code, feminine=m.group(2) == "ª"))

    # "#5", "No. 5" -> "number five".
    add(r"#(\d+)\b", lambda m: f"{words.number} {cardinal(int(m.group(1)), code)}")
    if english:
        add(r"\bNo\.\s?(\d+)", lambda m: f"number {cardinal(int(m.group(1)), code)}")

    # Phone-like digit groups (3 or more groups): read digit by digit, groups apart.
    add(r"(?<![\w.,])\+?\d{1,4}(?:[ -]\(?\d{2,4}\)?){2,}(?![\w.,])",
        lambda m: ", ".join(digits(g, code) for g in re.findall(r"\d+", m.group(0))))

    # Ranges "10-20", "1990–2000", and arithmetic signs between numbers.
    add(rf"(?<![\w-])({num})\s?[-–—]\s?({num.replace('[-−]?', '')})(?![\w])",
        lambda m: f"{number_words(m.group(1), code)} {words.to} {number_words(m.group(2), code)}")
    add(rf"({num})\s?([×x*])\s?({num})(?!\w)",
        lambda m: f"{number_words(m.group(1), code)} {words.times} {number_words(m.group(3), code)}")
    add(rf"({num})\s?\+\s?({num})", lambda m: f"{number_words(m.group(1), code)} {words.plus} "
                                              f"{number_words(m.group(2), code)}")
    if english:
        add(r"\b(\d+)x\b", lambda m: f"{cardinal(int(m.group(1)), code)} times")  # "3x faster"

    # Everything else that is a number, glued to letters too ("mp3", "v2.0").
    add(rf"(?<=[^\W\d_])({num.replace('[-−]?', '')})", lambda m: f" {number_words(m.group(1), code)} ")  # "mp3", "v2.0"
    add(rf"(?<![\w])({num})", lambda m: number_words(m.group(1), code))
    add(r"\d+", lambda m: f" {number_words(m.group(0), code)} ")

    # Abbreviations (after numbers: "No. 5" is gone by now).
    if english:
        add(r"\bDr\.(?=\s+[A-Z])", lambda m: "Doctor")
        add(r"\bSt\.(?=\s+[A-Z])", lambda m: "Saint")
        add(r"\b([A-Z][a-z]+)\s+Dr\.", lambda m: f"{m.group(1)} Drive")
        add(r"\b([A-Z][a-z]+)\s+St\.", lambda m: f"{m.group(1)} Street")
        add(r"\bDr\.", lambda m: "Doctor")
        add(r"\bSt\.", lambda m: "Street")
    for short, long in sorted(words.abbreviations.items(), key=lambda kv: -len(kv[0])):
        lead = r"(?<![\w.])"
        if short in MAY_END_SENTENCE:
            # A period that also ends the sentence stays: "apples, pears, etc. Then ..." keeps its stop.
            add(lead + re.escape(short) + r"(?=(\s+[A-Z]|\s*$))", lambda m, long=long: f"{long}.")
            add(lead + re.escape(short), lambda m, long=long: long)
        else:
            add(lead + re.escape(short) + r"(?!\w)", lambda m, long=long: long)

    # Symbols a G2P reads oddly or not at all.
    add(r"\s&\s", lambda m: f" {_AMPERSAND[code]} ")
    add(r"(?<=\s)@(?=\s)", lambda m: words.at)
    add(r"\s?=\s?(?=\w)", lambda m: f" {words.equals} ")
    add(r"\s~\s?(?=\w)", lambda m: " " + {"a": "about", "b": "about"}.get(code, "") + " ")
    return tuple(steps)


_MARK_RUN = re.compile(r"[.!?…,;:]{2,}")
_SYMBOL_RUN = re.compile(r"([^\w\s.!?…,;:])\1{2,}")  # marks above are handled by _MARK_RUN


def _one_mark(run: str) -> str:
    """What a run of sentence marks says: a question, an exclamation, a trailing-off, else its first mark."""
    if "?" in run:
        return "?"
    if "!" in run:
        return "!"
    if run == "...":
        return run
    if "…" in run or run.count(".") >= 3:
        return "…"
    return run[0]


def collapse_punctuation(text: str) -> str:
    """Runs of punctuation said once: "?!?!" -> "?", "....." -> "…", "-----" -> "-" ("--" stays).

    A run of marks is read as one pause, never as thousands of tokens of silence ("a" + "." * 4000)."""
    text = _MARK_RUN.sub(lambda m: _one_mark(m.group(0)), text)
    return _SYMBOL_RUN.sub(lambda m: m.group(1), text)


def normalize(text: str, code: str = "a") -> str:
    """The words a reader would say for `text` in language `code` (a, b, e, f, h, i, p)."""
    text = collapse_punctuation(text)
    if code not in WORDS:
        return text
    for pattern, replace in _rules(code):
        text = pattern.sub(replace, text)
    text = re.sub(r"[ \t]+(?=[.,;:!?](?:\s|$))", "", text)  # "mp three ." -> "mp three."
    return re.sub(r"[ \t]{2,}", " ", text).strip()
