"""Free-text PHI removal for report text: pure-Python rules, offline, no model files.

Why rules: the offline alternatives fail here (philter-lite needs NLTK tagger data that is
not shipped, presidio needs a spaCy model download for names, deidkit's rules miss street
addresses), and a site must be able to read every rule it runs. The rules look for the
*shape* of an identifier (a date, a phone number, a number after "MRN", capitalised words
after "Dr." or "discussed with", a number before "Street"), not for a list of names.

Order matters: e-mails and URLs first (they contain names and digits), then
the identifiers the adapter knows, dates (shifted, or removed), times, phone numbers,
labelled record numbers, addresses, institutions, names, ages over 89, and last any long
digit string or letter-and-digit token that is not medical (T12, C5-6, 14Fr, 3.5cm stay).
Shifted dates are parked behind private-use sentinels so that later rules cannot eat them.
Everything removed becomes ``___``, the placeholder MIMIC-CXR uses (its own ``___`` stay).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable

PLACEHOLDER = "___"
DateShift = Callable[[dt.date], dt.date]

_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                "october", "november", "december")
_MONTH_OF = {name[:3]: i + 1 for i, name in enumerate(_MONTH_NAMES)}
# "May" and "March" are also words: only their capitalised forms count as months.
MONTH = (r"(?:(?i:jan(?:uary)?|feb(?:ruary)?|apr(?:il)?|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
         r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)|May|MAY|Mar(?:ch)?|MAR(?:CH)?)\b\.?")
ORD = r"(?:st|nd|rd|th)"
NOT_MAY_VERB = r"(?!(?<=May)[ \t]+(?:represent|reflect|be|indicate|relate|suggest|have|show|need|also|not)\b)"
YEAR4 = r"(?:1[89]|2[0-2])\d{2}"  # MIMIC's shifted timeline runs into the 2100s

# -- names -----------------------------------------------------------------------------------
# "MR" (magnetic resonance), "MS" and "DR" (digital radiography) are titles only with a dot.
TITLE = r"(?:[Dd]r\b|DR\.|[Dd]octor\b|Mrs?\b|MRS?\.|Ms\b|MS\.|Miss\b|Mx\b|[Pp]rof(?:essor)?\b)\.?"
CAP = r"(?:[A-Z][a-z]*['’][A-Z][a-z]+|[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?)"
UPPER = r"[A-Z]{2,}(?:['-][A-Z]+)?"
INITIAL = r"[A-Z]\.?"
# Capitalised words that follow a name cue but are not names (care teams, devices, eponyms).
NOT_NAMES = frozenset("""
dr doctor mr mrs ms miss mx prof professor the a an this that these those his her their our patient patients team service department dept unit
radiology radiologist emergency surgery surgical medicine medical clinic clinical icu nurse nursing
resident fellow attending physician doctor staff telephone phone email page pager fax chest ct mri
ultrasound doppler comparison findings impression report study exam examination left right bilateral
frontal lateral portable upright supine prior previous outside referring ordering primary care floor
ward cardiology pulmonary oncology neurology urology orthopedics trauma interventional ir oncall call
on covering overnight day night house officer provider providers clinician clinicians family wife husband
son daughter mother father technologist tech technician hospital center protocol phone-call dobhoff
foley swan ganz picc port mediport hickman pleurx kerley pancoast valsalva may march no there tip small mild fleischner
acr who nccn aha ats
""".split())
ACRONYMS = frozenset("""
CT MR MRI US IR OR ED ER ICU MICU SICU CCU NICU PICU PACU CVICU RN NP PA MD DO AP PA LAT IJ NG OG ET ETT
PICC CXR KUB PET SPECT ECG EKG TTE TEE CTA MRA IV IVC SVC RA RV LA LV GI GU ENT OB GYN NICU DVT PE
""".split())
# A known name part already replaced by ___ still leaves the rest of the name to find.
NAME_TOKEN = rf"(?:{CAP}|[A-Z]\.|{PLACEHOLDER})"
NAME_SEQ = rf"{NAME_TOKEN}(?:[ \t]+{NAME_TOKEN}){{0,3}}"
# Cues after which capitalised words are a person (the cue is kept, the name removed).
NAME_CUES = (r"d/w|discussed\s+with|spoke\s+(?:with|to)|spoken\s+(?:with|to)|talked\s+(?:with|to)|"
             r"conveyed\s+to|communicated\s+(?:with|to)|relayed\s+to|notified|informed|paged|called|"
             r"per|by|by\s*:|patient(?:'s)?\s+name\s*:?|name\s*:|patient|pt\.?|cc\s*:?|contact\s*:?|"
             r"(?:attending|resident|radiologist|fellow|physician|referring(?:\s+physician)?|ordering(?:\s+physician)?|"
             r"provider|technologist|staff|author|signature)\s*:|"
             # a role or relative right before a name ("attending Sarah Lind", "daughter, Linda")
             r"(?:attending|resident|fellow|radiologist|physician|nurse|technologist|colleague|daughter|son|wife|"
             r"husband|mother|father|sister|brother|friend|partner|guardian)\s*,?")
CREDENTIALS = r"(?:M\.?D\.?|D\.?O\.?|R\.?N\.?|N\.?P\.?|PA-C|Ph\.?D\.?|FRCR|MBBS|FACR|DMD)"

# -- numbers ---------------------------------------------------------------------------------
ID_CUES = (r"(?i:mrn|mr\s*#|medical\s+record(?:\s+(?:number|no\.?|#))?|record\s+(?:number|no\.?|#)|"
           r"accession(?:\s+(?:number|no\.?|#))?|acc(?:t|ount)?\.?\s*(?:#|no\.?|number)|patient\s+id|"
           r"pt\.?\s+id|id(?:\s+(?:number|no\.?|#))?|ssn|social\s+security(?:\s+number)?|"
           r"encounter(?:\s+(?:number|no\.?|#))?|visit\s+(?:number|no\.?|#)|case\s+(?:number|no\.?|#)|"
           r"order\s+(?:number|no\.?|#)|requisition(?:\s+(?:number|no\.?|#))?|unit\s+no\.?|"
           r"specimen\s+(?:number|no\.?|#))")
# Letter-and-digit tokens that are medical, not identifiers.
MEDICAL_TOKEN = re.compile(
    r"(?:[CTLS]\d{1,2}(?:-[CTLS]?\d{1,2})*"                                    # spine levels
    r"|\d+(?:\.\d+)?(?:mm|cm|m|ml|cc|l|kg|g|mg|mcg|fr|f|french|h|hr|hrs|min|d|wk|wks|mo|y|yo|yr|yrs|x|"
    r"msv|mgy|kv|kvp|mas|hu|hz|mhz|khz|t|s|ms|mmhg|cmh2o|u|iu|meq|mmol|mol|gy|mci|mbq)"  # measurements
    r"|\d+(?:st|nd|rd|th)|x\d{1,2}|b\d+"                                          # ordinals, "x2", b-values
    r"|[A-Z][a-z]?-?\d{1,3}m?|\d{1,3}m?[A-Z][a-z]?)",                          # isotopes (I-131, 99mTc)
    re.IGNORECASE)


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


EMAIL = _rx(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
URL = _rx(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"]+[^\s<>\".,;:)]|"
          r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|us|uk|ca|de|info|biz)\b(?:/[^\s<>\"]*)?")
IP = _rx(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)")

# Full dates (shiftable); every one names its year, month and day groups.
DATE_NUMERIC = _rx(r"(?<![\w/.-])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
                   r"(?![\w/-]|\.\d)")
DATE_ISO = _rx(rf"(?<![\w/.-])(?P<y>{YEAR4})(?P<sep>[/.-])(?P<m>\d{{1,2}})(?P=sep)(?P<d>\d{{1,2}})"
               r"(?:T\d{2}:\d{2}(?::\d{2})?)?(?![\w/-]|\.\d)")
DATE_COMPACT = _rx(rf"(?<![\w.])(?P<y>{YEAR4})(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])(?!\w|\.\d)")
DATE_MONTH_FIRST = _rx(rf"\b(?P<mon>{MONTH})[ \t-]*(?P<d>\d{{1,2}}){ORD}?(?P<comma>,?)(?:[ \t-]+|(?<=,))(?:'|’)?"
                       rf"(?P<y>{YEAR4}|\d{{2}})(?![\w/-]|\.\d)")
DATE_DAY_FIRST = _rx(rf"\b(?P<d>\d{{1,2}}){ORD}?(?:[ \t]+of)?(?P<sep>[ \t-]+)(?P<mon>{MONTH}),?[ \t-]*"
                     rf"(?:'|’)?(?P<y>{YEAR4}|\d{{2}})(?![\w/-]|\.\d)")
# Partial dates: removed even when a shift is set (a day without its year cannot be shifted).
PARTIAL_DATES = (
    _rx(rf"\b{MONTH}[ \t]*\d{{1,2}}{ORD}?\b(?![ \t]*(?:mm|cm|%|x\b))"),             # Jan 15, January 15th
    _rx(rf"\b\d{{1,2}}{ORD}?(?:[ \t]+of)?[ \t]+{MONTH}{NOT_MAY_VERB}"),          # 15 Jan
    _rx(rf"\b{MONTH},?[ \t]+(?:of[ \t]+)?{YEAR4}\b"),                                # January 2020
    _rx(rf"(?<![\w/.])(?:0?[1-9]|1[0-2])/{YEAR4}\b"),                                # 01/2020
)
# Cued partial dates: the cue stays, the date part goes.
CUED_PARTIAL = (
    _rx(rf"(?i)\b(?P<cue>in|since|from|during|until|through|of|year|circa|back\s+to)[ \t]+"
        rf"(?P<x>{YEAR4})(?!\s*(?:mg|ml|cc|units?|iu|mcg|g|kg)\b)(?![\w-]|\.\d)"),  # in 2019
    _rx(rf"(?i)\b(?P<cue>on|of|from|since|until|by|before|after|dated)[ \t]+(?P<x>the[ \t]+\d{{1,2}}{ORD})"
        r"(?=\s*(?:[.,;:)!?]|$)|\s+(?:at|and|when|where|or|in|with|to|for|of\s+(?:this|last|next|the)\s+month)\b)"),
    _rx(r"(?i)\b(?P<cue>on|dated|from|since|until|till|of|for|by|before|after|prior|study|exam|"
        r"compared\s+(?:to|with)|comparison:?)[ \t]+"
        r"(?P<x>(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01]))(?![\w/]|\.\d)"),                     # on 1/15
)
TIME = (
    _rx(r"(?i)(?<![\w:.])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:[ \t]*(?:a\.?m\.?|p\.?m\.?)(?![a-z]))?"
        r"(?:[ \t]*(?:hours|hrs|h)\b)?(?![\w:]|\.\d)"),
    _rx(r"(?i)(?<![\w.])(?:1[0-2]|0?[1-9])[ \t]*(?:a\.m\.|p\.m\.|am\b|pm\b)"),
    _rx(r"(?i)(?<![\w.:])(?:[01]\d|2[0-3])[0-5]\d[ \t]*(?:hours|hrs|h)\b"),
    _rx(r"(?i)\b(?P<cue>at|@)[ \t]+(?P<x>(?:[01]\d|2[0-3])[0-5]\d)(?!\w|\.\d)"),        # at 0815
)
PHONE = (
    _rx(r"(?<![\w+])(?:\+?1[ \t.-]?)?(?:\(\d{3}\)[ \t]*|\d{3}[ \t.-])\d{3}[ \t.-]\d{4}"
        r"(?:[ \t]*(?:x|ext\.?|extension)[ \t]*\d{1,6})?(?!\w)"),
    _rx(r"(?<!\w)\+\d{1,3}(?:[ \t.-]?\(?\d{1,4}\)?){2,5}(?!\w)"),
    _rx(r"(?i)\b(?P<cue>pager|beeper|pgr|page|ext|extension|phone|tel|telephone|fax|cell|mobile|call(?:ed)?"
        r"(?:[ \t]+at)?|at[ \t]+(?:x|ext\.?))\.?[ \t]*(?:number|no\.?|#)?[ \t]*[:#]?[ \t]*"
        r"(?P<x>\d[\d \t().-]{2,}\d|\d{4,})"),
)
LABELLED_ID = _rx(rf"\b(?P<cue>{ID_CUES})[ \t]*[:#-]?[ \t]*(?P<x>(?=[A-Za-z-]*\d)[A-Za-z0-9][\w/-]*)")
STREET = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace|Ter|"
          r"Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Trail|Trl|Alley|Row|Plaza|Crescent|Close)")
ADDRESS = (
    _rx(rf"\b\d{{1,6}}[A-Za-z]?[ \t]+(?:[NSEW]\.?[ \t]+)?(?:(?:[A-Z][a-z]+|\d+{ORD})[ \t]+){{1,4}}{STREET}\b\.?"
        r"(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.?[ \t]*#?[\w-]+)?"
        r"(?:,?[ \t]*(?:[A-Z][a-z]+[ \t]?){1,3},?[ \t]*[A-Z]{2}\b(?:[ \t]*\d{5}(?:-\d{4})?)?)?"
        r"(?:[ \t]+in[ \t]+[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)?)?"),
    _rx(r"(?i:\b(?:lives|living|resides|residing|resident\s+of|moved\s+(?:to|from)|home\s+in|transferred\s+from))"
        r"(?:[ \t]+(?:in|at))?[ \t]+[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){0,2}"),
    _rx(r"(?i)\bP\.?[ \t]*O\.?[ \t]*Box[ \t]*\d+"),
    _rx(r"\b[A-Z]{1,2}\d[A-Z\d]?[ \t]+\d[A-Z]{2}\b"),                                      # UK postcode
    _rx(r"\b(?:[A-Z][a-z]+[ \t]){0,2}[A-Z][a-z]+,?[ \t]+[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?\b"),  # City, ST 02115
)
INSTITUTION = _rx(r"\b(?:(?:St|Saint|Mount|Mt)\.?[ \t]+)?(?:[A-Z][a-z]+[ \t]+){1,3}(?:Hospital|Medical[ \t]+Center|"
                  r"Clinic|Infirmary|Health[ \t]+System|Healthcare|Memorial)\b")
NAME_TITLED = _rx(rf"(?<!\w)(?P<cue>{TITLE})[ \t]*(?P<x>(?:(?:[A-Z]\.|{PLACEHOLDER})[ \t]*){{0,2}}(?:{CAP}|{UPPER})"
                  rf"(?:[ \t]+(?:{CAP}|{UPPER}|[A-Z]\.|{PLACEHOLDER})){{0,2}})(?=[^\w]|$)")
NAME_CUED = _rx(rf"(?i:\b(?P<cue>{NAME_CUES}))[ \t]+(?P<x>{NAME_SEQ})(?=[^\w]|$)")
NAME_CUED_UPPER = _rx(rf"(?i:\b(?P<cue>d/w|discussed\s+with|name\s*:|patient(?:'s)?\s+name\s*:?|by\s*:|"
                      rf"(?:signed|dictated|transcribed|reviewed|read|verified)\s+by))[ \t]+"
                      rf"(?P<x>{UPPER}(?:,?[ \t]+{UPPER}){{0,2}})(?=[^\w]|$)")
NAME_CREDENTIAL = _rx(rf"(?P<x>(?<!\w){NAME_TOKEN}(?:[ \t]+(?:{NAME_TOKEN}|{INITIAL})){{0,3}}),?[ \t]+(?P<cue>{CREDENTIALS})(?![\w])")
NAME_BEFORE_VERB = _rx(rf"(?P<x>(?<!\w){NAME_TOKEN}(?:[ \t]+{NAME_TOKEN}){{1,3}})(?P<cue>[ \t]+(?:was|were|has\s+been|is)[ \t]+(?:notified|informed|"
                       r"paged|called|contacted|made\s+aware|aware))")
AGE_OVER_89 = (
    _rx(r"(?i)(?<![\d.])(?P<x>9\d|1[0-4]\d)(?=[ \t-]*(?:years?|yrs?|y\.?o\.?|y/o|yo)\b|[ \t-]*(?:year|yr)s?-old)"),
    _rx(r"(?i)\b(?P<cue>aged?|age\s+of)[ \t:]*(?P<x>9\d|1[0-4]\d)(?!\d|\.\d)"),
)
DIGITS = _rx(r"(?<![\w.])\d{5,}(?![\w]|\.\d)|(?<![\w.-])\d+(?:[ \t]?-[ \t]?\d+)+(?![\w-]|\.\d)")
TOKEN = _rx(r"(?<![\w.-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*(?![\w-])")


def _two_digit_year(yy: int) -> int:
    return 2000 + yy if yy <= dt.date.today().year % 100 else 1900 + yy


def _year(text: str) -> int:
    return int(text) if len(text) == 4 else _two_digit_year(int(text))


def _month_name(original: str, month: int) -> str:
    """The shifted month written the way the original was (abbreviated or not, case)."""
    core = original.rstrip(".")
    name = _MONTH_NAMES[month - 1]
    name = name[:3] if len(core) <= 4 and core.lower() not in ("june", "july") else name
    name = name.upper() if core.isupper() else name.capitalize()
    return name + ("." if original.endswith(".") and len(name) == 3 else "")


def _shifted(m: re.Match[str], shift: DateShift, kind: str) -> str | None:
    """The match's date after the shift, in the original's format; None if not a real date."""
    g = m.groupdict()
    yl = len(g["y"].lstrip("'’"))
    try:
        if kind == "numeric":
            a, b = int(g["a"]), int(g["b"])
            month, day, order = (b, a, "dmy") if a > 12 else (a, b, "mdy")  # US order unless the day shows
            date = dt.date(_year(g["y"]), month, day)
        elif kind in ("iso", "compact"):
            date = dt.date(int(g["y"]), int(g["m"]), int(g["d"]))
        else:
            date = dt.date(_year(g["y"]), _MONTH_OF[g["mon"].rstrip(".").lower()[:3]], int(g["d"]))
    except (ValueError, KeyError):
        return None
    new = shift(date)
    year = f"{new.year:04d}" if yl == 4 else f"{new.year % 100:02d}"
    if kind == "numeric":
        width = 2 if len(g["a"]) == 2 else 1
        first, second = (new.month, new.day) if order == "mdy" else (new.day, new.month)
        return f"{first:0{width}d}{g['sep']}{second:0{width}d}{g['sep']}{year}"
    if kind == "iso":
        width = 2 if len(g["m"]) == 2 else 1
        return f"{new.year:04d}{g['sep']}{new.month:0{width}d}{g['sep']}{new.day:0{width}d}"
    if kind == "compact":
        return new.strftime("%Y%m%d")
    mon = _month_name(g["mon"], new.month)
    if kind == "month-first":
        return f"{mon} {new.day}{g['comma']} {year}"
    return f"{new.day}{g['sep']}{mon}{g['sep'] if g['sep'].strip() else ' '}{year}"


class _Scrubber:
    """One text's pass: replacements, with shifted dates parked behind sentinels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.parked: list[str] = []

    def park(self, value: str) -> str:
        self.parked.append(value)
        return f"\ue000{chr(0xE100 + len(self.parked) - 1)}\ue001"

    def sub(self, pattern: re.Pattern[str], keep: Callable[[re.Match[str]], bool] | None = None) -> None:
        """Replace each match (or only its group "x", keeping the rest) unless keep(match) says so."""
        def repl(m: re.Match[str]) -> str:
            if keep is not None and keep(m):
                return m.group(0)
            if "x" not in pattern.groupindex:
                return PLACEHOLDER
            start, end = m.span("x")
            return m.string[m.start():start] + PLACEHOLDER + m.string[end:m.end()]
        self.text = pattern.sub(repl, self.text)

    def names(self, pattern: re.Pattern[str]) -> None:
        """Replace group "x" less any leading or trailing words that are not names ("Findings", "AP")."""
        def repl(m: re.Match[str]) -> str:
            tokens = [t for t in re.finditer(r"\S+", m.group("x"))]
            while tokens and not _name_word(tokens[0].group(0)):
                tokens.pop(0)
            while tokens and not _name_word(tokens[-1].group(0)):
                tokens.pop()
            if not tokens:
                return m.group(0)
            start, end = m.start("x") + tokens[0].start(), m.start("x") + tokens[-1].end()
            return m.string[m.start():start] + PLACEHOLDER + m.string[end:m.end()]
        self.text = pattern.sub(repl, self.text)

    def dates(self, shift: DateShift | None) -> None:
        for pattern, kind in ((DATE_ISO, "iso"), (DATE_COMPACT, "compact"), (DATE_NUMERIC, "numeric"),
                              (DATE_MONTH_FIRST, "month-first"), (DATE_DAY_FIRST, "day-first")):
            def repl(m: re.Match[str], kind: str = kind) -> str:
                new = _shifted(m, shift, kind) if shift is not None else None
                if new is None and kind == "compact" and shift is not None:
                    return m.group(0)  # not a real date: a number, for the digit rule
                return self.park(new) if new is not None else PLACEHOLDER
            self.text = pattern.sub(repl, self.text)

    def restore(self) -> str:
        return re.sub("\ue000(.)\ue001", lambda m: self.parked[ord(m.group(1)) - 0xE100], self.text)


def _known_words(identifiers: Iterable[str]) -> list[str]:
    """Each identifier, each part of a DICOM PN name, and each identifier's digits on their own."""
    words: set[str] = set()
    for ident in identifiers:
        ident = (ident or "").strip()
        if not ident:
            continue
        words.add(ident)
        words.update(p for p in re.split(r"[\^\s,]+", ident) if len(p) >= 2)
        words.update(d for d in re.findall(r"\d+", ident) if len(d) >= 4)
    return sorted(words, key=len, reverse=True)


def _name_word(token: str) -> bool:
    word = token.strip(".,;:'’")
    return bool(word.strip("_")) and word.lower() not in NOT_NAMES and not (word.isupper() and word in ACRONYMS)


def _medical_or_short(m: re.Match[str]) -> bool:
    token = m.group(0)
    if MEDICAL_TOKEN.fullmatch(token):
        return True
    digits, letters = sum(c.isdigit() for c in token), sum(c.isalpha() for c in token)
    return digits < 4 and not (digits >= 3 and letters >= 3)


def _short_range(m: re.Match[str]) -> bool:
    token = m.group(0)
    return "-" in token and sum(c.isdigit() for c in token) < 6  # "10-12 mm", "3-4", not "123-45-6789"


def scrub_text(text: str, identifiers: Iterable[str] = (), shift: DateShift | None = None) -> str:
    """Report text without PHI: the known identifiers plus anything shaped like one.

    ``shift`` (the patient's keyed date shift) rewrites full dates in the text by the same offset
    as the study dates, in their original format; without it every date becomes ``___``.
    """
    if not text:
        return text
    s = _Scrubber(text)
    for pattern in (EMAIL, URL, IP):
        s.sub(pattern)
    for w in _known_words(identifiers):
        s.text = re.sub(rf"(?<![^\W_]){re.escape(w)}(?![^\W_])", PLACEHOLDER, s.text, flags=re.IGNORECASE)
    s.dates(shift)
    for pattern in (*TIME, *PARTIAL_DATES, *CUED_PARTIAL, *PHONE, LABELLED_ID, *ADDRESS, INSTITUTION):
        s.sub(pattern)
    for pattern in (NAME_TITLED, NAME_CUED_UPPER, NAME_CUED, NAME_CREDENTIAL, NAME_BEFORE_VERB):
        s.names(pattern)
    for pattern in AGE_OVER_89:
        s.sub(pattern)
    s.sub(DIGITS, keep=_short_range)
    s.sub(TOKEN, keep=_medical_or_short)
    return s.restore()
