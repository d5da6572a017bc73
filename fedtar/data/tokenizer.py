"""Report tokenizer: a word-level vocabulary trained on reports, or a pretrained decoder's own.

Word level with a frequency threshold is what the radiology report
generation literature uses (R2Gen and successors); it keeps reports short in
tokens, which matters on CPUs. Built with the `tokenizers` library and saved
as a standard tokenizer.json next to the model. A word-level vocabulary only
knows the words of the reports it was trained on, so every site measures
``unknown_rate`` on its own reports (a base trained on other text turns a
site's targets into [UNK]s). A pretrained decoder (DistilGPT2) brings its own
subword tokenizer (``from_pretrained``), which has no unknown words.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

PAD, BOS, EOS, UNK, SEP = "[PAD]", "[BOS]", "[EOS]", "[UNK]", "[SEP]"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, SEP)
TOKENIZER_FILE = "tokenizer.json"
SPECIALS_FILE = "report_tokenizer.json"  # which tokens play pad/bos/eos/unk/sep in a subword tokenizer
ROLES = ("pad", "bos", "eos", "unk", "sep")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:])")


class ReportTokenizer:
    """Thin wrapper that knows the special ids and turns ids back into prose."""

    def __init__(self, tokenizer: Tokenizer, specials: dict[str, str] | None = None):
        self.tk = tokenizer
        self.specials = specials or dict(zip(ROLES, SPECIAL_TOKENS))
        self.pad_id, self.bos_id, self.eos_id, self.unk_id, self.sep_id = (
            tokenizer.token_to_id(self.specials[r]) if self.specials.get(r) else None for r in ROLES
        )
        self.word_level = isinstance(tokenizer.model, models.WordLevel)

    @classmethod
    def train(cls, reports: Iterable[str], min_frequency: int = 1, vocab_size: int = 20000) -> ReportTokenizer:
        """Vocabulary by frequency, ties broken alphabetically: the same ids in every process.

        (The library's trainer breaks ties in hash order, so two runs could number words
        differently and start from different embeddings.)
        """
        normalizer, pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
        counts: Counter[str] = Counter()
        for text in reports:
            counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
        words = sorted((w for w, c in counts.items() if c >= min_frequency), key=lambda w: (-counts[w], w))
        vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
        for w in words[: max(vocab_size - len(vocab), 0)]:
            vocab.setdefault(w, len(vocab))
        tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tk.normalizer, tk.pre_tokenizer = normalizer, pre_tokenizer
        tk.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(tk)

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> ReportTokenizer:
        """A pretrained decoder's own (fast) tokenizer, from a hub id or a local folder.

        Its BOS/EOS are used as they are; a decoder without a padding token (GPT-2) gets
        [PAD] added at the end of the vocabulary (the model grows its embeddings by that
        one row, which only ever sits under masked positions).
        """
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(name_or_path)
        tk = hf.backend_tokenizer
        eos = hf.eos_token or hf.sep_token
        if eos is None:
            raise ValueError(f"{name_or_path}: the tokenizer has no end-of-sequence token")
        pad = hf.pad_token if hf.pad_token not in (None, eos, hf.bos_token) else PAD
        if tk.token_to_id(pad) is None:
            tk.add_special_tokens([pad])
        return cls(tk, {"pad": pad, "bos": hf.bos_token or hf.cls_token or eos, "eos": eos,
                        "unk": hf.unk_token if hf.unk_token not in (eos, hf.bos_token) else "", "sep": ""})

    @classmethod
    def load(cls, folder: str | Path) -> ReportTokenizer:
        folder = Path(folder)
        specials = json.loads((folder / SPECIALS_FILE).read_text()) if (folder / SPECIALS_FILE).is_file() else None
        return cls(Tokenizer.from_file(str(folder / TOKENIZER_FILE)), specials)

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.tk.save(str(Path(folder) / TOKENIZER_FILE))
        if not self.word_level:
            (Path(folder) / SPECIALS_FILE).write_text(json.dumps(self.specials, indent=2) + "\n")

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size()

    def encode_batch(self, texts: list[str], max_length: int) -> torch.Tensor:
        """[BOS] tokens [EOS] per text, truncated and right-padded to max_length."""
        out = torch.full((len(texts), max_length), self.pad_id, dtype=torch.long)
        for i, enc in enumerate(self.tk.encode_batch(texts, add_special_tokens=False)):
            ids = [self.bos_id, *enc.ids[: max_length - 2], self.eos_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: list[int]) -> str:
        """Ids (stopping at [EOS]) back to text with normal punctuation spacing."""
        words = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id, self.sep_id):
                continue
            words.append(i if not self.word_level else self.tk.id_to_token(i))
        if not self.word_level:
            return self.tk.decode(words, skip_special_tokens=True).strip()
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(words))


@dataclass(frozen=True)
class UnknownRate:
    """How many of a text collection's tokens the tokenizer maps to its unknown token."""

    unknown: int
    tokens: int

    @property
    def rate(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0

    def __str__(self) -> str:
        return f"{100 * self.rate:.2f}% ({self.unknown} of {self.tokens} tokens)"


def unknown_rate(tokenizer: ReportTokenizer, texts: Iterable[str]) -> UnknownRate:
    """Share of [UNK] among the tokens of texts (0 for a subword tokenizer without an unknown token)."""
    unknown = tokens = 0
    for enc in tokenizer.tk.encode_batch(list(texts), add_special_tokens=False):
        tokens += len(enc.ids)
        if tokenizer.unk_id is not None:
            unknown += sum(i == tokenizer.unk_id for i in enc.ids)
    return UnknownRate(unknown, tokens)
