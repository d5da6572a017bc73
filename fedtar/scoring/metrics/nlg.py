"""BLEU-1..4, ROUGE-L, CIDEr-D and METEOR with pycocoevalcap's definitions.

Conventions of the report-generation literature (the coco-caption code):
reports go through pycocoevalcap's PTBTokenizer pipeline (lowercased PTB
tokens, its punctuation list dropped), reproduced in pure Python by
fedtar.scoring.metrics.ptb (`metric_tokens`), one reference per report; BLEU is corpus-level with the "closest" reference
length; ROUGE-L is the mean per-report LCS F-measure with beta = 1.2; CIDEr is
pycocoevalcap's CIDEr-D (n = 4, sigma = 6, clipped tf-idf, x10, document
frequencies from the references being scored). Scores are on a 0-1 scale
except CIDEr (0-10). Our implementations agree with pycocoevalcap to 1e-6
(tests/test_metrics.py). METEOR runs pycocoevalcap's Java jar: without Java
it is reported as missing (NaN, with the reason), never as 0.
"""

from __future__ import annotations

import atexit
import logging
import math
import shutil
import threading
from collections import Counter
from collections.abc import Sequence

from .ptb import coco_tokenize

log = logging.getLogger(__name__)


def metric_tokens(text: str) -> str:
    """One report as pycocoevalcap's PTBTokenizer leaves it (use `coco_tokenize` for a corpus:
    the Java tokenizer reads reports joined by newlines, and a few rules look past the line end)."""
    return coco_tokenize([text])[0]


def _ngrams(words: list[str], n: int = 4) -> Counter:
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def bleu(hyps: Sequence[str], refs: Sequence[str], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n (pycocoevalcap Bleu, option 'closest', one reference each)."""
    small, tiny = 1e-9, 1e-15
    correct, guess = [0] * n, [0] * n
    test_len = ref_len = 0
    for h, r in zip(hyps, refs):
        hw, rw = h.split(), r.split()
        hc, rc = _ngrams(hw, n), _ngrams(rw, n)
        test_len += len(hw)
        ref_len += len(rw)
        for k in range(n):
            guess[k] += max(0, len(hw) - k)
        for gram, count in hc.items():
            correct[len(gram) - 1] += min(rc.get(gram, 0), count)
    scores, prod = [], 1.0
    for k in range(n):
        prod *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(prod ** (1.0 / (k + 1)))
    ratio = (test_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(hyps: Sequence[str], refs: Sequence[str], beta: float = 1.2) -> float:
    scores = []
    for h, r in zip(hyps, refs):
        hw, rw = h.split(" "), r.split(" ")
        lcs = _lcs(rw, hw)
        p, rec = lcs / len(hw), lcs / len(rw)
        scores.append(((1 + beta**2) * p * rec) / (rec + beta**2 * p) if p and rec else 0.0)
    return sum(scores) / max(len(scores), 1)


def cider_d(hyps: Sequence[str], refs: Sequence[str], n: int = 4, sigma: float = 6.0) -> float:
    ref_counts = [_ngrams(r.split(), n) for r in refs]
    hyp_counts = [_ngrams(h.split(), n) for h in hyps]
    df: Counter = Counter()
    for rc in ref_counts:
        df.update(rc.keys())
    log_docs = math.log(float(len(refs)))

    def vec(counts: Counter):
        v: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            w = float(tf) * (log_docs - math.log(max(1.0, df[gram])))
            v[k][gram] = w
            norm[k] += w * w
            if k == 1:  # pycocoevalcap counts bigrams as "length"; kept for agreement
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    total = 0.0
    for hc, rc in zip(hyp_counts, ref_counts):
        vh, nh, lh = vec(hc)
        vr, nr, lr = vec(rc)
        penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
        s = 0.0
        for k in range(n):
            val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
            if nh[k] and nr[k]:
                val /= nh[k] * nr[k]
            s += val * penalty
        total += s / n * 10.0
    return total / max(len(hyps), 1)


# The jar's start (about 5 s: it loads its paraphrase tables) cost more than the scoring of a site's
# whole split, and every site's evaluation paid it. One jar process is kept per Python process and
# reused; it holds about 1 GB, so it is stopped once unused for this many seconds (and at exit).
METEOR_IDLE_SECONDS = 30.0


class _MeteorJar:
    """The reused METEOR jar: one at a time, started on first use, stopped when idle or broken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scorer = None
        self._timer: threading.Timer | None = None
        atexit.register(self.stop)

    def score(self, gts: dict, res: dict) -> float:
        from pycocoevalcap.meteor.meteor import Meteor

        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._scorer is None or self._scorer.meteor_p.poll() is not None:
                self._scorer = Meteor()
            try:
                score, _ = self._scorer.compute_score(gts, res)
            except Exception:
                self._stop_locked()  # a half-read answer would misalign the next call's lines
                raise
            self._timer = threading.Timer(METEOR_IDLE_SECONDS, self.stop)
            self._timer.daemon = True
            self._timer.start()
            return float(score)

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        scorer, self._scorer = self._scorer, None
        if scorer is not None:
            if scorer.lock.locked():  # compute_score failed between its acquire and release
                scorer.lock.release()
            with scorer.lock:
                scorer.meteor_p.stdin.close()
                scorer.meteor_p.kill()
                scorer.meteor_p.wait()


_METEOR_JAR = _MeteorJar()


def meteor(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str | None]:
    """(score, None) or (NaN, reason) when Java or the jar is unavailable."""
    if shutil.which("java") is None:
        return float("nan"), "METEOR needs Java (not found on PATH)"
    try:
        import pycocoevalcap.meteor.meteor  # noqa: F401
    except ImportError as e:
        return float("nan"), f"METEOR unavailable: {e}"
    # The jar's protocol uses '|||' as a separator and newlines as record ends.
    clean = lambda s: s.replace("|||", " ").replace("\n", " ") or "empty"  # noqa: E731
    try:
        return _METEOR_JAR.score({i: [clean(r)] for i, r in enumerate(refs)},
                                 {i: [clean(h)] for i, h in enumerate(hyps)}), None
    except Exception as e:  # the Java side died: say so instead of a wrong number
        return float("nan"), f"METEOR failed: {type(e).__name__}: {e}"
