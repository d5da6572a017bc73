"""A rule-based CheXpert labeler and comparison-to-prior extractor, in pure Python.

It follows the CheXpert labeler (stanfordmlgroup/chexpert-labeler): the same
text cleaning ("and/or" -> "or", "x/y" -> "x or y"), its mention and
unmention phrase lists (fedtar.scoring.chexpert_phrases, plus a few marked
additions), and its three classification passes per mention, in its order:
pre-negation uncertainty ("cannot exclude X", "X is not excluded", "no new X"),
negation ("no X", "X has resolved", "normal X", "X is removed"), then
uncertainty ("possible X", "may represent X", "X or Y", "X versus Y",
"differential diagnosis includes X"). CheXpert reads these from a dependency
parse; here each rule is a cue with a direction and a scope: a cue before the
mention reaches it within the same clause (clauses end at "but", "however",
"which", "with", "except", ";", ":", "there is" and the like), a cue after it
only within a few words. Special rules kept from CheXpert: "vascular
congestion", "pulmonary congestion", "indistinctness" and "vascular
prominence" are uncertain edema; a stable or unchanged heart or mediastinal
silhouette is uncertain (it says nothing of its size); CHF or heart failure
adds uncertain cardiomegaly.

Scope that follows sentence structure, developed on real reports (the
odd-numbered IU X-ray reports, tests/test_labeler_iu.py): a coordinated list
closed by one verdict negates every item ("cardiac size, mediastinal contour
and pulmonary vascularity are within normal limits"); "normal size and
configuration of X"; degree words inside a negation ("not significantly
enlarged"); "not seen on prior" marks a new finding, not a negation; a hedge
reaches across "with" ("suggestive of mass with obstructive atelectasis") but
not into a later list item that has its own verb; "X is in the differential",
"in the appropriate clinical setting" and the hedges IU masks as XXXX
(", XXXX atelectasis", "XXXX representing") are uncertain; an "or" after a
comma belongs to the next item; "scarring or atelectasis" is a certain lung
opacity (every alternative is one). A heart or mediastinum named with no
statement of size is no finding. A finding attributed to another exam ("seen
on the earlier CT") is not mentioned; a density or nodule explained as a
granuloma, calcification, artefact, vessel on end or fracture (in its
sentence or by the next: "This may be artifact") is no lung lesion or
opacity, or uncertain when the explanation is hedged.

Per report, CheXpert's aggregation: any positive mention gives 1, else any
uncertain gives -1, else 0; an observation never mentioned is left out.
"No Finding" is 1 when no observation other than Support Devices, nor any
of CheXpert's other findings (emphysema, granuloma, scoliosis, ...), is
positive or uncertain; else 0. One departure: the stable-silhouette
uncertainty does not rule out No Finding ("heart size is stable" in an
otherwise normal follow-up report).

The same mention finder drives `extract_changes`, which reads statements
of change against the prior exam (new / increased / decreased / unchanged /
resolved) per observation.
"""

from __future__ import annotations

import re
from functools import lru_cache

from data_adapters.findings import CHEXPERT_OBSERVATIONS
from fedtar.scoring.chexpert_phrases import EXTRA_MENTIONS, EXTRA_UNMENTIONS, MENTIONS, UNMENTIONS

PATHOLOGIES = tuple(o for o in CHEXPERT_OBSERVATIONS if o not in ("No Finding", "Support Devices"))


def _phrase_regex(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """Substring match as CheXpert does; "_" at an end is a word boundary; a space also matches a hyphen."""
    parts = []
    for p in sorted(set(phrases), key=len, reverse=True):
        body = re.escape(p.strip("_")).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]")
        parts.append((r"\b" if p.startswith("_") else "") + body + (r"\b" if p.endswith("_") else ""))
    return re.compile("|".join(parts)) if parts else None


def _merged(a: dict[str, tuple[str, ...]], b: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {k: a.get(k, ()) + b.get(k, ()) for k in set(a) | set(b)}


_MENTION_RE = {obs: _phrase_regex(p) for obs, p in _merged(MENTIONS, EXTRA_MENTIONS).items()}
_UNMENTION_RE = {obs: _phrase_regex(p) for obs, p in _merged(UNMENTIONS, EXTRA_UNMENTIONS).items()}
# Mentions of the heart or mediastinum that name no abnormality: negated by "normal", uncertain when
# "stable", never a change statement on their own.
_WEAK = re.compile(r"^(?:the heart|heart size|cardiac size|cardiac shadow|cardiac contour|cardiac silhouette"
                   r"|contour|mediastin\w*|cardiomediastinum|mediastinal (?:configuration|silhouette)"
                   r"|pericardial silhouette)$")
_ENLARGED = re.compile(r"enlarg|widen|cardiomegaly|prominent|increased in size|large\b")
# What makes a structure-only mention a statement about its size (else it names no finding).
_SIZE_WORD = re.compile(r"enlarg|widen|cardiomegaly|prominen|increased|large\b|larger\b|borderline|upper limits?"
                        r"|top[\s-]normal|upper[\s-]normal|high[\s-]normal|increase in size|\bmass\b")
_STABLE = re.compile(r"\b(?:stable|unchanged|similar|not changed|no (?:\w+ )?change)\b")
_ALWAYS_UNCERTAIN = re.compile(r"vascular congestion|pulmonary congestion|indistinctness|vascular prominence")

# --- cleaning and sentences (chexpert-labeler loader/load.py, plus common report shorthand)
_SHORTHAND = ((r"\bc/w\b", "consistent with"), (r"\bs/p\b", "status post"), (r"\br/o\b", "rule out"),
              (r"\bd/w\b", "discussed with"), (r"\bw/o\b", "without"), (r"\bw/(?=\s|\w)", "with "),
              (r"\bb/l\b", "bilateral"), (r"\bh/o\b", "history of"), (r"\bf/u\b", "follow up"),
              (r"\bvs\.(?=\s)", "vs"), (r"\be\.g\.", "eg"), (r"\bi\.e\.", "ie"), (r"\bdr\.", "dr"),
              (r"\bapprox\.", "approx"), (r"\b([ap])\.m\.", r"\1m"), (r"\bno\.(?=\s*\d)", "number"),
              (r"\bcan't\b", "cannot"), (r"\bcan not\b", "cannot"))
_SENTENCE_END = re.compile(r"\.(?=\s|$)|[;?!\n]")


def _clean(text: str) -> str:
    t = text.lower()
    for pattern, repl in _SHORTHAND:
        t = re.sub(pattern, repl, t)
    t = t.replace("and/or", "or")
    t = re.sub(r"(?<=[a-z])/(?=[a-z])", " or ", t)
    t = re.sub(r"\.{2,}", ".", t)
    t = re.sub(r"([,.])(?=[a-z])", r"\1 ", t)  # space after commas and periods, as CheXpert does
    return " ".join(t.split(" "))


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(_clean(text)) if s.strip(" ,")]


# --- cues
_BREAK = re.compile(r"\b(?:but|however|although|though|which|except|aside from|apart from|with|whereas|while"
                    r"|(?<!is )(?<!are )(?<!appears )(?<!appear )otherwise"
                    r"|there (?:is|are|was|were|has been|have been)|[a-z]+ (?:is|are) (?:seen|noted|present)"
                    r")\b|[;:]")
_BREAK_UNC = re.compile(_BREAK.pattern.replace("|with|", "|"))
# Pre-negation uncertainty (checked first).
_PRE_UNC_BEFORE = re.compile(r"\bcannot (?:be )?(?:entirely |completely )?(?:exclud|rule out)|\bnot (?:be )?exclud"
                             r"|\bno new\b|\bno evidence to rule out")
_PRE_UNC_AFTER = re.compile(r"^\W*(?:[\w-]+\W+){0,6}?(?:cannot|could not|may not|is not|are not|not)\s+"
                            r"(?:be\s+)?(?:entirely\s+|completely\s+|totally\s+|definitely\s+)?"
                            r"(?:exclud\w*|ruled? out)"
                            r"|^\W*(?:[\w-]+\W+){0,6}?difficult to (?:entirely |completely )?exclude")
# Negation.
_NEG_BEFORE = re.compile(r"\bno\b(?!\s+(?:\w+\s+){0,2}?(?:change|increase|decrease|worsening|improvement"
                         r"|difference)s?\b)|\bnot\b(?=[^,]*$)|\bwithout\b|\bnegative for\b|\bfree of\b|\bclear of\b"
                         r"|\bresolution of\b|\bresolved\b|\bremoval of\b|\bno longer\b|\babsence of\b"
                         r"|\brather than\b|\bnor\b|\bhistory of\b|\bdisappearance of\b|\bsequelae of\b"
                         r"|\bclearing of\b|\bexclude\b|\bdeny\b|\bdenies\b")
_NORMAL_BEFORE = re.compile(r"\b(?:normal|unremarkable)\b(?:\W+[\w-]+){0,4}\W*$"
                            # "normal size and configuration of the cardiac silhouette"
                            r"|\bnormal\s+[\w-]+(?:\s+(?:and|or)\s+[\w-]+)?\s+of\s+(?:the\s+)?$")
# Degree words that sit inside a negation ("not significantly enlarged").
_DEGREE = (r"(?:significantly|substantially|markedly|definitely|grossly|appreciably|clearly|particularly|overtly"
           r"|obviously|acutely|considerably|much|very|well|convincingly|substantively)")
_NEG_VERDICT = (r"(?:absent|resolved|removed|cleared|gone|normal|unremarkable|within (?:the )?normal limits"
                r"|within (?:the )?limits of normal|within normal range|top[\s-]normal|upper limits? of normal"
                r"|no longer (?:seen|present|visible|identified|evident)"
                rf"|not (?:{_DEGREE}[\s-]+)?(?:seen|identified|present|visualized|enlarged|appreciated|demonstrated"
                r"|evident|widened|increased|prominent|large|dilated)"
                r"(?!\s+(?:on|in)\s+(?:the\s+)?(?:prior|previous|earlier|old|outside|recent)))")
_NEG_AFTER = re.compile(r"^\W*(?:(?!shows?\b|demonstrat|reveal)[\w-]+\W+){0,4}?"
                        r"(?:(?:is|are|has|have|was|were|appears?|remains?|looks?|seems?)"
                        rf"\s+(?:[\w-]+\s+){{0,3}}?)?{_NEG_VERDICT}\b")
# A coordinated list closed by one verdict: "cardiac size, mediastinal contour, and pulmonary vascularity are
# within normal limits", "heart and mediastinum of normal size". The words between the mention and the
# verb must be list items (short, no finding adjective); the verdict follows the verb.
_COPULA = re.compile(r"\b(?:is|are|was|were|appears?|remains?|looks?|seems?|has|have)\b")
_VERBLESS_VERDICT = re.compile(r"\b(?:of\s+)?(?:normal|unremarkable|within normal limits)\b")
_PREDICATE_NEG = re.compile(rf"^\s+(?:(?:been|to be|otherwise|again|still|now|both|all|each|overall)\s+)*"
                            rf"(?:{_DEGREE}\s+)?{_NEG_VERDICT}\b")
_LIST_SEP = re.compile(r",|\band\b|\bor\b")
_NOT_LIST_ITEM = re.compile(r"\b(?:no|not|without|enlarg\w*|widen\w*|prominen\w*|increas\w*|decreas\w*|large"
                            r"|small|mild\w*|moderate\w*|severe\w*|new|seen|noted|present|identified|visible"
                            r"|demonstrat\w*|stable|unchanged|shows?|reveal\w*)\b")


def _list_closed_negative(after: str) -> bool:
    """The mention heads a coordinated list whose closing verdict is normal / absent."""
    cop, verbless = _COPULA.search(after), _VERBLESS_VERDICT.search(after)
    if cop is not None and (verbless is None or cop.start() < verbless.start()):
        between, predicate = after[:cop.start()], after[cop.end():]
        if not _PREDICATE_NEG.match(predicate):
            return False
    elif verbless is not None:
        between = after[:verbless.start()]
    else:
        return False
    items = [i.split() for i in _LIST_SEP.split(between)]
    return all(len(i) <= 8 for i in items) and not _NOT_LIST_ITEM.search(between)


# Uncertainty.
_UNC_BEFORE = re.compile(r"\b(?:may|maybe|might|could|would|possibl\w*|probabl\w*|presumabl\w*|likely|question\w*"
                         r"|suspect\w*|suspicious|suspicion|concern\w*|worrisome|suggest\w*"
                         r"|differential|consideration|considered|consider|favou?r\w*"
                         r"|correlat\w*|secondary to|atypical|borderline|equivocal|rule out|evaluat\w* for"
                         r"|assess\w* for|versus|vs|cannot|uncertain|not clear|unclear|obscur\w*|vs)\b"
                         # IU masks words as XXXX; right after a comma or "appearance"/"most", or before
                         # "due" / "representing" ("likely due to", "likely representing"), the masked word
                         # is a hedge.
                         r"|(?:(?<!mild)(?<!minimal)(?<!small)(?<!patchy)(?<!subtle)(?<!faint)(?<!streaky),|\bappearance|\bmost)"
                         r"\s+xxxx(?:\s+[\w-]+){0,2}\s*$|\bxxxx\s+(?:due|represent\w*|reflect\w*)\b")
_UNC_AFTER = re.compile(r"^\s*(?:[\w-]+\s+){0,3}?(?:(?:is|are|was|were)\s+)?(?:(?:also|less|more|most|not)\s+)?"
                        r"(?:(?:possible|possibly|probable|probably|likely)(?!\s+(?:reflect|represent|due|secondary"
                        r"|relate|indicat|correspond|from|caused))|suspected|questionable|favou?red|considered"
                        r"|a consideration|in question|obscured|borderline|not well (?:seen|evaluated|visualized)"
                        r"|(?:may|might|could|can)\s+(?:also\s+)?(?:be\s+)?(?:present|seen|noted|visible|developing"
                        r"|evolving|identified))\b")
# Hedges anywhere after the mention in its clause: "pneumonia is in the differential", "compatible with
# pneumonia in the appropriate clinical setting".
_UNC_AFTER_ANY = re.compile(r"\b(?:is|are) (?:also )?(?:in|within) the differential\b"
                            r"|\bin the (?:appropriate |right |proper |correct )?clinical (?:setting|context)\b")
# A finding attributed to another exam ("pneumonia seen on the earlier CT", "mass seen on XXXX scan") is
# not a finding of this one.
_OTHER_EXAM_AFTER = re.compile(r"^\W*(?:(?!not\b)[\w-]+\W+){0,3}?"
                               r"(?:(?:seen|noted|shown|demonstrated|described|identified|visible"
                               r"|evident|detected)\s+)?(?:on|at|by)\s+(?:the\s+|a\s+|an\s+)?(?:[\w-]+\s+){0,2}?"
                               r"(?:ct|cat|scan|mri|pet|ultrasound|fluoroscopy|(?:prior|previous|earlier|recent|outside"
                               r"|old|remote)\s+(?:[\w-]+\s+){0,2}?(?:ct|scan|study|studies|exam\w*|radiograph\w*|film\w*"
                               r"|x-xxxx|chest x-ray))\b")
_OTHER_EXAM_BEFORE = re.compile(r"\b(?:ct|cat scan|mri|pet|ultrasound)\b(?:\W+[\w-]+){0,6}?\W+(?:show\w*|demonstrat\w*"
                                r"|reveal\w*)\b")
# A density or nodule explained as something that is no lung finding ("nodular density ... represents a
# healing rib fracture", "nodules ... are calcified sequela of old granulomatous disease").
_EXPLAINED_AFTER = re.compile(r"^\W*(?:[\w-]+\W+){0,16}?(?:represent\w*|reflect\w*|due to|secondary to|related to"
                              r"|relating to|attributable to|compatible with|consistent with|suggest\w*|correspond\w*"
                              r"|from|is|are|be)\W+(?:[\w-]+\W+){0,4}?(?:artifact\w*|crowding|overlap\w*|superimpos\w*"
                              r"|vascular shadows?|vessels?|on end|nipples?|granulom\w*|(?<!un)(?<!non)calcifi\w*"
                              r"|soft tissues?"
                              r"|costochondral|sternoclavicular|fractures?|osteophytes?|bone islands?)\b")
_CALCIFIED_BEFORE = re.compile(r"\b(?<!un)(?<!non)(?:calcifi\w*|granulomatous)(?:\s+[\w-]+){0,3}\s*$")
# The next sentence explains the finding away ("... nodular opacity ... This may be artifact.").
_EXPLAINED_NEXT = re.compile(r"^(?:this|these|it|they)\b(?:\W+[\w-]+){0,4}?\W+(?:be|represents?|reflects?|is|are)\W+"
                             r"(?:[\w-]+\W+){0,6}?(?:artifact\w*|crowding|overlap\w*|superimpos\w*|vascular shadows?"
                             r"|vessels?|on end|nipples?|granulom\w*|calcifi\w*|soft tissues?|costochondral"
                             r"|sternoclavicular)")
_HEDGED = re.compile(r"\b(?:may|might|could|possibl\w*|probabl\w*|likely|xxxx|question\w*|suspect\w*|alternatively)\b")
_LUNG_OPACITY_FAMILY = ("Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis")
_OWN_PREDICATE = re.compile(r"^[^,]*\b(?:noted|seen|present|identified|demonstrated|is|are|was|were)\b")
_OR_NEAR = re.compile(r"^\s*(?:[\w-]+\s+){0,2}?(?:or|versus|vs)\b")
_OR_BEFORE_NEAR = re.compile(r"\b(?:or|versus|vs)(?:\s+[\w-]+){0,2}\s*$")


def _clause(sentence: str, start: int, end: int, breaks: re.Pattern[str] | None = None) -> tuple[str, str]:
    breaks = breaks or _BREAK
    before, after = sentence[:start], sentence[end:]
    cuts = list(breaks.finditer(before))
    if cuts:
        before = before[cuts[-1].end():]
    cut = breaks.search(after)
    if cut:
        after = after[:cut.start()]
    return before, after


def _classify(sentence: str, start: int, end: int, use_or: bool = True, across_with: bool = True) -> int:
    """1 / 0 / -1 for one mention, in CheXpert's order of passes."""
    before, after = _clause(sentence, start, end)
    if _PRE_UNC_BEFORE.search(before) or _PRE_UNC_AFTER.match(after):
        return -1
    if (_NEG_BEFORE.search(before) or _NORMAL_BEFORE.search(before) or _NEG_AFTER.match(after)
            or _list_closed_negative(after)):
        return 0
    # An uncertainty cue governs the whole phrase, across "with" ("suggestive of hilar mass with
    # obstructive atelectasis").
    wide_before = _clause(sentence, start, end, _BREAK_UNC)[0]
    if _OWN_PREDICATE.match(after):
        # A list item with its own verb is its own clause ("... most suggestive of artifacts, healed
        # right 10th rib fracture noted"): a hedge before the comma does not reach it.
        before, wide_before = before.rsplit(",", 1)[-1], wide_before.rsplit(",", 1)[-1]
    if (_UNC_BEFORE.search(wide_before if across_with else before) or _UNC_AFTER.match(after)
            or _UNC_AFTER_ANY.search(after.split(",", 1)[0])):
        return -1
    if use_or and (_OR_NEAR.match(after) or _OR_BEFORE_NEAR.search(before)):
        return -1
    return 1


def _find_mentions(sentence: str) -> list[tuple[str, re.Match[str]]]:
    found = []
    for obs, pattern in _MENTION_RE.items():
        if pattern is None:
            continue
        unmention = _UNMENTION_RE.get(obs)
        blocked = [m.span() for m in unmention.finditer(sentence)] if unmention is not None else []
        for m in pattern.finditer(sentence):
            if not any(m.start() < e and m.end() > s for s, e in blocked):
                found.append((obs, m))
    return found


def _aggregate(current: int | None, new: int) -> int:
    if current is None:
        return new
    if 1 in (current, new):
        return 1
    if -1 in (current, new):
        return -1
    return 0


@lru_cache(maxsize=65536)
def _sentence_labels(sentence: str) -> tuple[tuple[str, int, bool], ...]:
    """(observation, label, soft) per observation: soft marks the stable-silhouette uncertainty."""
    out: dict[str, int] = {}
    soft: set[str] = set()
    mentions = _find_mentions(sentence)
    for obs, m in mentions:
        text = m.group(0)
        before, after = _clause(sentence, m.start(), m.end())
        if _OTHER_EXAM_AFTER.match(after) or _OTHER_EXAM_BEFORE.search(before):
            continue
        explained = _EXPLAINED_AFTER.match(sentence[m.end():])
        if obs in ("Lung Opacity", "Lung Lesion") and (explained or _CALCIFIED_BEFORE.search(sentence[:m.start()])):
            if not (explained and re.search(r"\b(?:may|might|could|possibl\w*|or)\b", explained.group(0))):
                continue
            out[obs] = _aggregate(out.get(obs), -1)  # "may represent calcified granuloma or lymphadenopathy"
            continue
        # Devices are not hedged by a cue before "with" ("vascular congestion in a patient with a valve").
        label = _classify(sentence, m.start(), m.end(), across_with=obs != "Support Devices")
        if label == -1 and obs == "Lung Opacity" and _classify(sentence, m.start(), m.end(), use_or=False) == 1:
            # "scarring or atelectasis": every alternative is a lung opacity, so the opacity is certain.
            for obs2, m2 in mentions:
                gap = sentence[m.end():m2.start()] if m2.start() >= m.end() else sentence[m2.end():m.start()]
                if m2 is not m and obs2 in _LUNG_OPACITY_FAMILY and re.fullmatch(r"[\w-]*\s*(?:or|versus|vs)\s*", gap):
                    label = 1
        if label != 0 and obs == "Edema" and _ALWAYS_UNCERTAIN.fullmatch(text.replace("-", " ")):
            label = -1
        if label == 1 and obs in ("Cardiomegaly", "Enlarged Cardiomediastinum") and _WEAK.match(text):
            # A structure named without an abnormality ("the heart and lungs have XXXX", "contour
            # deformity of the rib") is no finding; a stable one is uncertain (CheXpert).
            before, after = _clause(sentence, m.start(), m.end())
            own = re.split(r",|\band\b|\bor\b|\bwith\b", before)[-1]  # the mention's own noun phrase
            if not (_SIZE_WORD.search(own) or _SIZE_WORD.search(after)):
                if not _STABLE.search(sentence):
                    continue
                label = -1
                soft.add(obs)
        out[obs] = _aggregate(out.get(obs), label)
        if obs == "Edema" and label != 0 and text in ("chf", "heart failure"):
            out["Cardiomegaly"] = _aggregate(out.get("Cardiomegaly"), -1)
    return tuple((obs, lab, obs in soft) for obs, lab in out.items())


def label_report(text: str) -> dict[str, int]:
    """Observation -> 1 / 0 / -1 for the observations the report mentions, plus No Finding."""
    labels: dict[str, int] = {}
    firm: set[str] = set()  # observations with a positive or uncertain mention that is not soft
    sents = sentences(text)
    for i, s in enumerate(sents):
        explained = i + 1 < len(sents) and _EXPLAINED_NEXT.match(sents[i + 1])
        for obs, lab, soft in _sentence_labels(s):
            if explained and lab == 1 and obs in ("Lung Opacity", "Lung Lesion"):
                if not _HEDGED.search(sents[i + 1]):
                    continue
                lab = -1
            labels[obs] = _aggregate(labels.get(obs), lab)
            if lab != 0 and not soft:
                firm.add(obs)
    labels.pop("No Finding", None)
    # A stable heart or mediastinum is uncertain for their enlargement (CheXpert) but no finding.
    finding = any(o in firm for o in (*PATHOLOGIES, "No Finding"))
    labels["No Finding"] = 0 if finding else 1
    return labels


_CHANGE_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("resolved", re.compile(r"\bresolved\b|\bresolution\b|no longer (?:seen|present|visible)", re.I)),
    ("new", re.compile(r"\bnew\b|\bnewly\b|interval development|interval appearance", re.I)),
    ("increased", re.compile(r"\bincreas\w*|\bworsen\w*|\benlarging\b|\bprogress\w*|\blarger\b", re.I)),
    ("decreased", re.compile(r"\bdecreas\w*|\bimprov\w*|\bsmaller\b|\bdiminish\w*|\breduc\w*", re.I)),
    ("unchanged", re.compile(r"\bunchanged\b|\bstable\b|no (?:significant |interval )?change|\bsimilar\b"
                             r"|\bpersistent\b|\bpersists\b", re.I)),
)


def extract_changes(text: str) -> dict[str, str]:
    """Observation -> change class, from sentences that state change against the prior.

    Only mentions that name a finding count: "heart size is unchanged" states no change of
    cardiomegaly, "enlarged cardiac silhouette is new" does."""
    changes: dict[str, str] = {}
    for s in sentences(text):
        cls = next((name for name, cue in _CHANGE_CUES if cue.search(s)), None)
        if cls is None:
            continue
        for obs, m in _find_mentions(s):
            if obs != "No Finding" and (not _WEAK.match(m.group(0)) or _ENLARGED.search(s)):
                changes.setdefault(obs, cls)
    return changes
