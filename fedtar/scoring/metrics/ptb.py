"""Pure-Python Stanford PTB tokenizer, as pycocoevalcap runs it (CoreNLP 3.4.1).

The report-generation literature scores text after pycocoevalcap's
PTBTokenizer: the Java CoreNLP 3.4.1 lexer with `-preserveLines -lowerCase`
over all reports joined by newlines, then a fixed list of punctuation tokens
dropped. Its quirks decide the scores on real text, so we reproduce them
rather than approximate: clitics split off ("patient's" -> "patient 's",
"can't" -> "ca n't"), slashed words kept whole ("and/or", "d/w"), known
abbreviations keep their period ("dr.", "e.g.", "a.m."), numbers glued to
units split ("2.5cm" -> "2.5 cm"), brackets become "-lrb-"/"-rrb-" and,
being lowercased, survive the punctuation filter.

This is a longest-match lexer with JFlex's tie rule (earliest rule wins) over
the rules of CoreNLP 3.4.1's PTBLexer.flex that matter for report text; the
lexer state a few rules read (trailing context) crosses line breaks, so
reports are tokenized together (`coco_tokenize`). tests/test_metrics.py
compares it token by token with the Java tokenizer on a real-style corpus.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Tokens pycocoevalcap drops after tokenizing (its PUNCTUATIONS list, verbatim).
COCO_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                               ".", "?", "!", ",", ":", "-", "--", "...", ";"])

_L = r"[^\W\d_]"
_D = r"\d"
_AN = r"[^\W_]"
_APOS = r"(?:['\u0092\u2019]|&apos;)"
_APOSETC = r"(?:['\u0092\u2019\u0091\u2018\u201B]|&apos;)"
_HYPHEN = r"[-_\u058A\u2010\u2011]"
_SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
_NL = r"(?:\r|\r?\n|\u2028|\u2029|\u000B|\u000C|\u0085)"
_SPACENL = rf"(?:{_SPACE}|{_NL})"
# A sentence end as 3.4.1 reads it with -preserveLines (measured against the jar): a space or line
# break, then a space or a capital ("A.\nThe" ends a sentence, "A. \nthe" does not).
_SENTEND = rf"{_SPACENL}(?:{_SPACE}|[A-Z])"
_WORD = rf"{_L}(?:{_L}|{_D})*(?:[.!?]{_L}(?:{_L}|{_D})*)*"
_REDAUX = rf"{_APOS}(?i:[msd]|re|ve|ll)"
_NUM = rf"{_D}*(?:[.:,\u00AD\u066B\u066C]{_D}+)+|{_D}+"  # may start with '.', ',' or ':'
# Words after which an acronym ends a sentence ("type A. The"): then a one-letter one loses its period.
_SENT_START = ("(?:A(?i:bout|ccording|dditionally|fter|n|s|t)?|B(?i:ut)|E(?i:arlier)|H(?i:e|er|ere|owever)"
               "|I(?i:f|n|t)|L(?i:ast)|M(?i:any|ore|r\\.|s\\.)|N(?i:ow)|O(?i:nce|ne|ther|ur)"
               "|S(?i:he|ince|o|ome|uch)|T(?i:hat|he|hen|here|hese|hey|his)|W(?i:e|hen|hile|hat)|Y(?i:et|ou))")
_ACRO = r"[A-Za-z](?:\.[A-Za-z])+"
_THING_PART = rf"(?:[dDoOlL]{_APOSETC}{_AN})?{_AN}+"
_THING = rf"{_THING_PART}(?:{_HYPHEN}{_THING_PART})*"
_HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:{_ACRO}\.|[A-Za-z0-9\u00AD]+))+"
_THINGA = r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+"
# Abbreviations (CoreNLP 3.4.1 lists, case-insensitive except a bracketed first letter in the
# original, written here as a literal capital). ABBREV1: always keep the period.
_ABBREV1 = ("(?i:jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|mon|tue|tues|wed|thu|thurs|fri"
            "|ala|ariz|calif|colo|conn|dak|fla|ga|ind|kans?|ky|md|mich|minn|mo|mont|neb|nev|okla|penn"
            "|tenn|va|vt|wisc?|wyo|inc|cos?|corp|pp?tys?|ltd|plc|bancorp|bhd|assn|univ|intl|sys"
            "|tel|est|ext|sq|jr|sr|bros|(?:ed|ph)\\.d|blvd|rd|esq|etc|al|seq|rt)"
            "|A(?i:rk)|D(?i:el)|I(?i:ll)|L(?i:a)|M(?i:ass)|M(?i:iss)|O(?i:re)|P(?i:a)|T(?i:ex)|W(?i:ash)")
# ABBREV2: titles and the like, also keep the period.
_ABBREV2 = ("(?i:mr|mrs|ms|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl"
            "|pvt|mt|capt|ste?|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det|vs|alex|wm|jos|cie"
            "|a\\.k\\.a|cf|treas|invt|elec|natl|m[ft]g|ft|ph|dept)|M(?i:iss)")
# ABBREV3: keep the period only before a number ("No. 2", "fig. 3").
_ABBREV3 = "(?i:ca|figs?|nos?|prop|pp|op)"
_MISC = ("[\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00BA\u00D7\u00F7\u2020-\u2023\u2032-\u2038"
         "\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u22FF\u2300-\u23FF"
         "\u2600-\u26FF\u3012\u30FB]")

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}


def _as_is(tok: str) -> str | None:
    return tok


def _drop(tok: str) -> str | None:
    return None


def _left_quote(tok: str) -> str | None:
    return re.sub(r"&quot;|\"", "``", tok.replace("'", "`"))


def _right_quote(tok: str) -> str | None:
    return re.sub(r"&quot;|\"", "''", re.sub(r"[\u2019\u0092]", "'", tok))


def _quotes(tok: str) -> str | None:
    tok = re.sub(r"[\u0082\u008B\u0091\u2018\u201A\u201B\u2039]", "`", tok)
    tok = re.sub(r"[\u0092\u009B\u00B4\u2019\u203A]", "'", tok)
    tok = re.sub(r"[\u0084\u0093\u201C\u201E\u00AB]", "``", tok)
    return re.sub(r"[\u0094\u201D\u00BB]", "''", tok)


def _hyphens(tok: str) -> str | None:
    return "--" if 3 <= len(tok) <= 4 else tok


def _frac(tok: str) -> str | None:
    return tok.replace(" ", "\u00A0")


# (token regex, trailing-context regex or None, action). Order is the flex file's rule order:
# the longest token+context wins, ties go to the earlier rule.
_RULES: list[tuple[str, str | None, object]] = [
    (r"(?i:can)", r"(?i:not)", _as_is),  # "cannot" -> "can" "not"
    (r"(?i:gon|wan|got)", r"(?i:na|ta)\b", _as_is),  # "gonna" -> "gon" "na"
    (rf"{_APOS}(?i:t)", r"(?i:is)\b", _right_quote),  # "'tis" -> "'t" "is"
    (r"<(?:[!?][A-Za-z-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.-]*(?: +[A-Za-z][A-Za-z0-9_:.-]*(?: *= *(?:'[^'\r\n]*'"
     r"|\"[^\"\r\n]*\"|[A-Za-z][A-Za-z0-9_:.-]*))?)* */?|/[A-Za-z][A-Za-z0-9_:.-]*) *>", None, _as_is),  # SGML
    (r"[<>]?[:;=][\-o*']?[()DPdpO\\{@|\[\]]", r"(?![A-Za-z])",
     lambda t: t.replace("(", "-LRB-").replace(")", "-RRB-")),  # emoticons: ";)" and, glued, ":d" in ":d/w"
    (r"&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", None, lambda t: "--"),
    (r"&amp;", None, lambda t: "&"),
    (_WORD, _REDAUX, _as_is),
    (r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*", rf"(?i:n{_APOSETC}t)", _as_is),
    (_WORD, None, _as_is),
    (rf"{_APOS}n{_APOS}?|[lLdDjJ]{_APOS}|{_APOS}em|[A-HJ-XZn]{_APOSETC}{_L}{{2}}{_L}*|{_APOS}[2-9]0s"
     rf"|{_APOS}till?|{_L}{_L}*[aeiouyAEIOUY]{_APOSETC}[aeiouA-Z]{_L}*|{_APOS}cause|cont'd\.?|'twas"
     r"|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l", None, _as_is),
    (rf"y{_APOS}", _L, _as_is),
    (r"https?://[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]", None, _as_is),
    (r"(?:(?:www\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
     r"|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},\-_$]+\.)+(?:com|net|org|edu)))"
     r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?", None, _as_is),
    (r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@(?:[^ \t\n\f\r\"<>|().\u00A0]+\.)+[a-zA-Z]{2,4}", None, _as_is),
    (_REDAUX, r"[^A-Za-z]", _right_quote),
    (rf"(?i:n{_APOSETC}t)", None, _right_quote),
    (rf"{_D}{{1,2}}[\-/]{_D}{{1,2}}[\-/]{_D}{{2,4}}", None, _as_is),  # DATE
    (rf"[\-+]?(?:{_NUM})", None, _as_is),  # NUMBER
    (r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)", None, _as_is),
    (rf"(?:{_D}{{1,4}}[- \u00A0])?{_D}{{1,4}}(?:\\?/|\u2044){_D}{{1,4}}", None, _frac),  # FRAC
    (r"[\u00BC\u00BD\u00BE\u2153-\u215E]", None, _as_is),
    (rf"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls|Cap{_APOS}n"
     rf"|c{_APOS}est", None, _as_is),  # TBSPEC
    (r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}", None, _as_is),  # THING3
    (r"(?i:[A-Z]*\$)|#", None, _as_is),
    (rf"#{_L}+|@[A-Za-z][A-Za-z0-9_]*", None, _as_is),  # hashtags and handles
    (r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]", None, _as_is),
    (r"[A-Za-z]", rf"\.{_SPACENL}+{_SENT_START}{_SPACE}", _as_is),  # "type A. The": the letter alone
    (rf"{_ACRO}\.", None, _as_is),  # ACRONYM: e.g., a.m., u.s.
    (rf"(?:{_ABBREV1})\.", None, _as_is),
    (rf"(?:{_ABBREV2}|[A-Za-z]|{_ACRO})\.", None, _as_is),
    (rf"{_ABBREV3}\.", rf"{_SPACENL}?{_D}", _as_is),
    (_ACRO, _SPACENL, _as_is),
    (rf"{_APOS}[0-9][0-9]", _SPACENL, _as_is),
    (rf"{_WORD}\.", r"[,;:]", _as_is),
    (r"(?:\([0-9]{3}\)[ \u00A0]?|[0-9]{3}[\- \u00A0.])[0-9]{3}[\- \u00A0.][0-9]{4}", None,
     lambda t: t.replace(" ", "\u00A0").replace("(", "-LRB-").replace(")", "-RRB-")),  # PHONE
    (r"\"|&quot;", r"[A-Za-z0-9$]", _left_quote),
    (r"\"|&quot;", None, _right_quote),
    (r"\+", None, _as_is),
    (r"[%&\u2030\u2031]", None, _as_is),
    (r"[~^]", None, _as_is),
    (r"[|]", None, _as_is),
    (r"[\\\x7f]", None, _drop),
    (r"[<>]", None, _as_is),
    (r"[\[\]{}()]", None, lambda t: _BRACKETS[t]),
    (r"-+", None, _hyphens),
    (r"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", None, lambda t: "..."),
    (r"@+|#+|_+", None, _as_is),
    (r"\*+|(?:\\\*){1,3}", None, _as_is),
    (r"[,;:]", None, _as_is),
    (r"[?!]+", None, _as_is),
    (r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA]", None, _as_is),
    (r"=", None, _as_is),
    (r"/", None, _as_is),
    (rf"{_HTHING}\.", r"[,;:]", _as_is),
    (_HTHING, None, _as_is),
    (rf"{_THING}\.", r"[,;:]", _as_is),
    (_THING, None, _as_is),
    (rf"{_THINGA}\.", r"[,;:]", _as_is),
    (_THINGA, None, _as_is),
    (r"'", r"[A-Za-z][^ \t\n\r\u00A0]", _left_quote),
    (_REDAUX, None, _right_quote),
    (r"''|{a}|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A"
     r"\u00AB\u00BB]{{1,2}}".format(a=_APOS), None, _quotes),
    (_MISC, None, _as_is),
    (rf"\0|{_SPACE}+|[\u200B\u200E\u200F\uFEFF]", None, _drop),
    (_NL, None, lambda t: "\n"),
    (r".", None, _drop),  # untokenizable: CoreNLP deletes it
]
_COMPILED = [(re.compile(tok, re.S), re.compile(ctx) if ctx else None, act) for tok, ctx, act in _RULES]
# Fast path: a plain word ending before a space or line end is a WORD token (no other rule
# matches longer: those need '.', ',', an apostrophe, a hyphen, '/', '@' or digits).
_PLAIN = re.compile(r"[A-Za-z]+(?=[ \n]|$)")
_SPLIT_WORDS = frozenset(["cannot", "gonna", "wanna", "gotta"])
_SPACES = re.compile(r" +")


def _lex(text: str) -> list[str]:
    """PTB tokens of `text` (case kept) with "\n" tokens at line breaks."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACES.match(text, i)
        if m:
            i = m.end()
            continue
        m = _PLAIN.match(text, i)
        if m and m.group(0).lower() not in _SPLIT_WORDS:
            out.append(m.group(0))
            i = m.end()
            continue
        best_len, best_end, best_act = 0, i + 1, _drop
        for tok_re, ctx_re, act in _COMPILED:
            tm = tok_re.match(text, i)
            if tm is None or tm.end() == i:
                continue
            total = tm.end()
            if ctx_re is not None:
                cm = ctx_re.match(text, tm.end())
                if cm is None:
                    continue
                total = cm.end()
            if total - i > best_len:
                best_len, best_end, best_act = total - i, tm.end(), act
        tok = best_act(text[i:best_end])  # type: ignore[operator]
        if tok is not None:
            out.append(tok)
        i = best_end
    return out


def ptb_tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lowercased PTB tokens of each text, tokenized together as pycocoevalcap does."""
    joined = "\n".join(t.replace("\n", " ") for t in texts)
    lines: list[list[str]] = [[]]
    for tok in _lex(joined):
        if tok == "\n":
            lines.append([])
        else:
            lines[-1].append(tok.lower())
    lines += [[] for _ in range(len(texts) - len(lines))]
    return lines[:len(texts)]


def coco_tokenize(texts: Sequence[str]) -> list[str]:
    """What pycocoevalcap's PTBTokenizer returns: tokens without its punctuation list, space-joined."""
    return [" ".join(t for t in toks if t not in COCO_PUNCTUATIONS) for toks in ptb_tokenize(texts)]
