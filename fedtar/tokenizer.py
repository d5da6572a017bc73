"""Report tokenizer: a word-level vocabulary trained on the training reports.

Word level with a frequency threshold is what the radiology report
generation literature uses (R2Gen and successors); it keeps reports short in
tokens, which matters on CPUs. Built with the `tokenizers` library and saved
as a standard tokenizer.json next to the model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

PAD, BOS, EOS, UNK, SEP = "[PAD]", "[BOS]", "[EOS]", "[UNK]", "[SEP]"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, SEP)
TOKENIZER_FILE = "tokenizer.json"
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:])")


class ReportTokenizer:
    """Thin wrapper that knows the special ids and turns ids back into prose."""

    def __init__(self, tokenizer: Tokenizer):
        self.tk = tokenizer
        self.pad_id, self.bos_id, self.eos_id, self.unk_id, self.sep_id = (
            tokenizer.token_to_id(t) for t in SPECIAL_TOKENS
        )

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
    def load(cls, folder: str | Path) -> ReportTokenizer:
        return cls(Tokenizer.from_file(str(Path(folder) / TOKENIZER_FILE)))

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.tk.save(str(Path(folder) / TOKENIZER_FILE))

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size()

    def encode_batch(self, texts: list[str], max_length: int) -> torch.Tensor:
        """[BOS] tokens [EOS] per text, truncated and right-padded to max_length."""
        out = torch.full((len(texts), max_length), self.pad_id, dtype=torch.long)
        for i, enc in enumerate(self.tk.encode_batch(texts)):
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
            words.append(self.tk.id_to_token(i))
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(words))
