"""The report tokenizer: deterministic ids, round trip, special tokens."""

from __future__ import annotations

from fedtar.data.tokenizer import ReportTokenizer

REPORTS = ["There is a small left pleural effusion.", "No pneumothorax.", "Stable cardiomegaly; no effusion."]


def test_same_reports_any_order_same_ids(tmp_path):
    a = ReportTokenizer.train(REPORTS)
    b = ReportTokenizer.train(list(reversed(REPORTS)))
    assert a.tk.get_vocab() == b.tk.get_vocab()
    a.save(tmp_path)
    assert ReportTokenizer.load(tmp_path).tk.get_vocab() == a.tk.get_vocab()


def test_round_trip_and_padding():
    tok = ReportTokenizer.train(REPORTS)
    ids = tok.encode_batch(["No pneumothorax.", "Stable cardiomegaly; no effusion."], max_length=12)
    assert ids.shape == (2, 12) and int(ids[0, 0]) == tok.bos_id
    assert tok.decode(ids[0, 1:].tolist()) == "no pneumothorax."
    assert tok.decode(ids[1, 1:].tolist()) == "stable cardiomegaly; no effusion."
    truncated = tok.encode_batch(["There is a small left pleural effusion."], max_length=5)
    assert truncated[0].tolist()[-1] == tok.eos_id
    assert "[UNK]" in tok.decode(tok.encode_batch(["zebra"], 5)[0, 1:].tolist())
    assert ReportTokenizer.train(REPORTS, min_frequency=2).vocab_size < tok.vocab_size
