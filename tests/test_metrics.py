"""Metrics agree with pycocoevalcap; the labeler reads negation and uncertainty; temporal accuracy."""

from __future__ import annotations

import math
import re
import shutil

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from report_corpus import REPORTS, TOKENIZER_SENTENCES

from data_adapters.findings import CHEXPERT_OBSERVATIONS
from fedtar.scoring.labeler import extract_changes, label_report
from fedtar.scoring.metrics import (
    PROTOCOLS,
    bleu,
    cider_d,
    comparison_accuracy,
    evaluate_by_visit,
    evaluate_reports,
    meteor,
    metric_tokens,
    rouge_l,
    temporal_entity_f1,
)
from fedtar.scoring.metrics.clinical import clinical_efficacy
from fedtar.scoring.metrics.ptb import coco_tokenize

PAIRS = [
    ("there is a small left pleural effusion", "there is a moderate left pleural effusion"),
    ("no pneumothorax", "no pneumothorax or pleural effusion"),
    ("the heart size is normal no consolidation", "heart size is normal"),
    ("stable right atelectasis stable right atelectasis", "interval resolution of right atelectasis"),
    ("degenerative changes of the thoracic spine", "the thoracic spine shows degenerative change"),
    ("new left pneumothorax is seen", "a large left pneumothorax is new"),
]


def test_bleu_rouge_cider_match_pycocoevalcap():
    hyps, refs = [h for h, _ in PAIRS], [r for _, r in PAIRS]
    gts = {i: [r] for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    ref_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for ours, theirs in zip(bleu(hyps, refs), ref_bleu):
        assert ours == pytest.approx(theirs, abs=1e-6)
    assert rouge_l(hyps, refs) == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-6)
    assert cider_d(hyps, refs) == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-6)
    assert 0 < cider_d(hyps, refs) < 10


def test_perfect_and_disjoint_reports():
    refs = [r for _, r in PAIRS]
    assert bleu(refs, refs)[3] == pytest.approx(1.0)
    assert rouge_l(refs, refs) == pytest.approx(1.0)
    assert bleu(["zebra"] * len(refs), refs)[0] < 1e-6


def test_metric_tokens_drop_punctuation_and_case():
    assert metric_tokens("No pneumothorax. Left-sided effusion, small.") == "no pneumothorax left-sided effusion small"
    # PTB quirks that move scores on real text: clitics split, slashes kept, brackets survive lowercased.
    assert metric_tokens("The patient's and/or (2.5cm) d/w Dr. ___") == \
        "the patient 's and/or -lrb- 2.5 cm -rrb- d/w dr. ___"


def _real_style_texts() -> list[str]:
    texts = [t for t, _ in REPORTS] + TOKENIZER_SENTENCES
    return texts + [s for t in texts for s in re.split(r"(?<=[.;]) ", t)]  # sentences too


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTBTokenizer is a Java program")
def test_tokens_and_scores_equal_pycocoevalcap_pipeline_on_real_style_text():
    """Our pure-Python pipeline against the real one: Java PTBTokenizer, then Bleu/Rouge/Cider."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = _real_style_texts()
    java = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    ours = coco_tokenize(texts)
    mismatched = [(t, java[i][0], ours[i]) for i, t in enumerate(texts) if java[i][0] != ours[i]]
    assert not mismatched, mismatched[:3]
    assert len(texts) > 400 and sum("-lrb-" in o for o in ours) >= 5

    # Scores: references are the reports, hypotheses other reports (realistic overlap, not copies).
    refs = [t for t, _ in REPORTS]
    hyps = refs[7:] + refs[:7]
    gts = PTBTokenizer().tokenize({i: [{"caption": r}] for i, r in enumerate(refs)})
    res = PTBTokenizer().tokenize({i: [{"caption": h}] for i, h in enumerate(hyps)})
    ours_row = evaluate_reports(hyps, refs, with_meteor=False)
    ref_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        assert ours_row[f"bleu{k + 1}"] == pytest.approx(ref_bleu[k], abs=1e-9)
    assert ours_row["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-9)
    assert ours_row["cider"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-9)
    assert 0.05 < ours_row["bleu1"] < 0.6 and 0 < ours_row["cider"] < 2


@pytest.mark.skipif(shutil.which("java") is None, reason="the no-Java path is tested below")
def test_meteor_runs_with_java():
    score, note = meteor(["no pleural effusion"], ["no pleural effusion"])
    assert note is None and score > 0.9


@pytest.mark.skipif(shutil.which("java") is None, reason="the no-Java path is tested below")
def test_meteor_jar_is_reused_restarted_when_dead_and_stopped_when_idle(monkeypatch):
    from fedtar.scoring.metrics import nlg

    pair = (["no pleural effusion", "small left effusion"], ["no pleural effusion", "left pleural effusion"])
    first, _ = meteor(*pair)
    jar = nlg._METEOR_JAR._scorer.meteor_p
    assert meteor(*pair)[0] == first and nlg._METEOR_JAR._scorer.meteor_p is jar  # no second start
    jar.kill()
    jar.wait()
    assert meteor(*pair)[0] == first  # a dead jar is replaced, the score unchanged
    restarted = nlg._METEOR_JAR._scorer.meteor_p
    assert restarted is not jar
    monkeypatch.setattr(nlg, "METEOR_IDLE_SECONDS", 0.2)
    meteor(*pair)
    restarted.wait(timeout=10)  # stopped once idle: its memory is given back
    assert nlg._METEOR_JAR._scorer is None


def test_meteor_without_java_says_so(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    score, note = meteor(["a"], ["a"])
    assert math.isnan(score) and "Java" in note


# One positive phrase per observation, as radiologists write them.
PHRASES = {
    "Enlarged Cardiomediastinum": "widening of the mediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "opacity in the right lower lobe",
    "Lung Lesion": "pulmonary nodule",
    "Edema": "pulmonary edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion",
    "Pleural Other": "pleural thickening",
    "Fracture": "rib fracture",
    "Support Devices": "endotracheal tube",
}


@pytest.mark.parametrize("obs", list(PHRASES))
def test_labeler_positive_negative_uncertain(obs):
    phrase = PHRASES[obs]
    assert label_report(f"There is {phrase}.")[obs] == 1
    assert label_report(f"No {phrase}.")[obs] == 0
    assert label_report(f"There is no evidence of {phrase}.")[obs] == 0
    assert label_report(f"Possible {phrase}.")[obs] == -1
    assert label_report(f"{phrase} cannot be excluded.")[obs] == -1


def test_labeler_scope_and_no_finding():
    labels = label_report("No pneumothorax, but there is a small left pleural effusion.")
    assert labels["Pneumothorax"] == 0 and labels["Pleural Effusion"] == 1
    assert label_report("The heart size is normal.")["Cardiomegaly"] == 0
    assert label_report("Left pleural effusion has resolved.")["Pleural Effusion"] == 0
    assert label_report("No acute cardiopulmonary process.")["No Finding"] == 1
    assert label_report("Small effusion. Line in place.")["No Finding"] == 0
    assert label_report("Line in place.")["No Finding"] == 1  # devices are not pathology
    assert set(label_report("x")) <= set(CHEXPERT_OBSERVATIONS)


def test_change_extraction():
    text = ("Since the prior exam. New right pneumothorax. Left effusion has decreased. "
            "Stable cardiomegaly. Interval resolution of left atelectasis. Worsening edema.")
    assert extract_changes(text) == {"Pneumothorax": "new", "Pleural Effusion": "decreased",
                                     "Cardiomegaly": "unchanged", "Atelectasis": "resolved", "Edema": "increased"}
    assert extract_changes("Enlarged cardiac silhouette. The heart size is normal.") == {}


def test_comparison_accuracy_counts_reference_statements():
    refs = ["New left effusion. Stable cardiomegaly.", "No change.", "Worsening edema."]
    hyps = ["New left effusion. Increased cardiomegaly.", "Anything.", "Edema."]
    acc, n = comparison_accuracy(hyps, refs)
    assert n == 3 and acc == pytest.approx(1 / 3)


def test_clinical_efficacy_micro_and_macro():
    refs = ["Left pleural effusion.", "Pneumothorax.", "Cardiomegaly."]
    hyps = ["Left pleural effusion.", "No pneumothorax.", "Cardiomegaly. Edema."]
    ce = clinical_efficacy(hyps, refs)
    # Positives: refs {PE, PTX, CM} (+No Finding 0s); hyps {PE, NoFinding(row 2), CM, Edema}
    assert ce["ce_precision"] == pytest.approx(2 / 4)
    assert ce["ce_recall"] == pytest.approx(2 / 3)
    assert 0 < ce["ce_f1_macro"] < 1


def test_evaluate_reports_full_row():
    out = evaluate_reports(["No pneumothorax."], ["No pneumothorax."], with_meteor=False)
    assert out["bleu1"] == pytest.approx(1.0) and out["ce_f1"] == pytest.approx(1.0)
    assert math.isnan(out["meteor"]) and math.isnan(out["cmp_acc"])
    with pytest.raises(ValueError, match="2 generated reports for 1 references"):
        evaluate_reports(["a", "b"], ["a"])


def test_clinical_efficacy_protocols():
    refs = ["Left pleural effusion. Cardiomegaly.", "Possible pneumonia.", "No acute process."]
    hyps = ["Left pleural effusion.", "Pneumonia.", "No acute process."]
    ce = clinical_efficacy(hyps, refs)
    # Uncertain as negative: positives refs {PE, CM | - | NoFinding}, hyps {PE | PN | NoFinding}.
    assert ce["ce_precision"] == pytest.approx(2 / 3) and ce["ce_recall"] == pytest.approx(2 / 3)
    # Example-based: report 1 F1 2/3, report 2 F1 0 (a false positive), report 3 F1 1.
    assert ce["ce_f1_example"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    # Uncertain as positive: "possible pneumonia" now matches.
    assert ce["ce_precision_micro_upos"] == pytest.approx(1.0) and ce["ce_recall_micro_upos"] == pytest.approx(3 / 4)
    # The 5 CheXbert observations: PE and CM only in the references, PE found.
    assert ce["ce_recall_micro_5"] == pytest.approx(1 / 2) and ce["ce_precision_micro_5"] == pytest.approx(1.0)
    assert set(ce) == set(PROTOCOLS) and "uncertain as positive" in PROTOCOLS["ce_f1_example_5_upos"]


def test_temporal_entity_matching_and_hallucinated_priors():
    assert temporal_entity_f1(["Stable cardiomegaly. New effusion."], ["New effusion, cardiomegaly stable."]) == \
        pytest.approx(1.0)
    assert temporal_entity_f1(["Increased effusion."], ["Decreased effusion."]) < 1e-6
    assert temporal_entity_f1(["No effusion."], ["No effusion."]) == pytest.approx(1.0)  # both empty
    assert temporal_entity_f1(["Worsening edema and new effusion."], ["Worsening edema."]) == pytest.approx(2 / 3)
    by_visit = evaluate_by_visit(["Unchanged cardiomegaly.", "Cardiomegaly.", "Compared to prior, new effusion."],
                                 ["Cardiomegaly.", "Cardiomegaly.", "New effusion."], [1, 1, 2])
    assert by_visit[1]["prior_halluc"] == pytest.approx(0.5) and "prior_halluc" not in by_visit[2]
    assert by_visit[2]["tem"] == pytest.approx(1.0)


def test_chexbert_needs_a_local_weights_file(tmp_path, capsys):
    from fedtar.cli import main
    from fedtar.scoring.metrics.chexbert import chexbert_labeler

    missing = tmp_path / "chexbert.pth"
    with pytest.raises(FileNotFoundError, match=r"CheXbert weights file not found: .*chexbert\.pth"):
        chexbert_labeler(missing)
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path),
                 "--chexbert-weights", str(missing)]) != 0
    assert f"CheXbert weights file not found: {missing}" in capsys.readouterr().err
