"""The CheXpert-style labeler on real-style report text: failure kinds, corpus agreement, changes."""

from __future__ import annotations

import pytest
from report_corpus import HELD_OUT, REPORTS

from data_adapters.findings import CHEXPERT_OBSERVATIONS
from fedtar.scoring.labeler import extract_changes, label_report

# (sentence, observation, expected label); None: not mentioned.
CASES = [
    # Support devices that CheXpert's list misses, and words that only look like devices.
    ("Median sternotomy wires are intact.", "Support Devices", 1),
    ("Surgical clips in the right upper quadrant.", "Support Devices", 1),
    ("Left-sided pacemaker with leads in the right atrium and ventricle.", "Support Devices", 1),
    ("A left chest wall ICD is present.", "Support Devices", 1),
    ("Prosthetic aortic valve.", "Support Devices", 1),
    ("Coronary artery stent is noted.", "Support Devices", 1),
    ("The ET tube tip is 3 cm above the carina.", "Support Devices", 1),
    ("Enteric tube courses below the diaphragm.", "Support Devices", 1),
    ("Right IJ central venous catheter tip in the mid SVC.", "Support Devices", 1),
    ("The endotracheal tube has been removed.", "Support Devices", 0),
    ("Plate-like atelectasis at the left base.", "Support Devices", None),
    ("Kerley B lines are present.", "Support Devices", None),
    ("Findings consistent with prior granulomatous disease.", "Support Devices", None),
    # Differential diagnosis and prior granulomatous infection: never positive.
    ("Differential diagnosis includes pulmonary edema, infection, or hemorrhage.", "Edema", -1),
    ("Differential diagnosis includes pulmonary edema, infection, or hemorrhage.", "Pneumonia", -1),
    ("Opacities could reflect mild interstitial edema or atypical infection.", "Edema", -1),
    ("Mild pulmonary vascular congestion.", "Edema", -1),
    ("Calcified granulomas are sequelae of prior granulomatous infection.", "Pneumonia", None),
    ("Findings are concerning for inflammatory/infectious process and/or aspiration.", "Pneumonia", -1),
    ("Right lower lobe opacity, concerning for pneumonia.", "Pneumonia", -1),
    ("Right lower lobe opacity, concerning for pneumonia.", "Lung Opacity", 1),
    ("Infection cannot be excluded.", "Pneumonia", -1),
    ("Right lower lobe consolidation consistent with pneumonia.", "Pneumonia", 1),
    ("No evidence of pneumonia or CHF.", "Edema", 0),
    # Calcified granulomas and nodules are not lung lesions; real masses and nodules are.
    ("Calcified granuloma in the right upper lobe.", "Lung Lesion", None),
    ("Stable calcified nodule in the left mid lung.", "Lung Lesion", None),
    ("A 9 mm pulmonary nodule in the right midlung.", "Lung Lesion", 1),
    ("Possible nodule at the right lung base.", "Lung Lesion", -1),
    ("Massive right pleural effusion.", "Lung Lesion", None),
    # Heart and mediastinum.
    ("The heart is normal in size.", "Cardiomegaly", 0),
    ("The heart is mildly enlarged.", "Cardiomegaly", 1),
    ("Heart size is top-normal.", "Cardiomegaly", 0),
    ("The cardiac silhouette is stable.", "Cardiomegaly", -1),
    ("Stable cardiomegaly.", "Cardiomegaly", 1),
    ("Borderline heart size.", "Cardiomegaly", -1),
    ("Mediastinal widening.", "Enlarged Cardiomediastinum", 1),
    ("No pericardial effusion.", "Pleural Effusion", None),
    # Scope: a cue reaches its own clause only.
    ("No pneumothorax, but there is a small left pleural effusion.", "Pleural Effusion", 1),
    ("Chest tube in place with no residual pneumothorax.", "Support Devices", 1),
    ("No change in the small left pleural effusion.", "Pleural Effusion", 1),
    ("Left basilar opacity likely reflects atelectasis.", "Lung Opacity", 1),
    ("Left basilar opacity likely reflects atelectasis.", "Atelectasis", -1),
    ("Bibasilar opacities, atelectasis versus consolidation.", "Consolidation", -1),
    ("No new consolidation.", "Consolidation", -1),
    ("Healed left rib fractures.", "Fracture", 1),
]


@pytest.mark.parametrize("sentence,obs,expected", CASES)
def test_failure_kinds(sentence, obs, expected):
    assert label_report(sentence).get(obs) == expected, label_report(sentence)


def test_no_finding_rule():
    assert label_report("Lungs are clear. Median sternotomy wires.")["No Finding"] == 1  # devices only
    assert label_report("Calcified granuloma. Lungs otherwise clear.")["No Finding"] == 0  # other finding
    assert label_report("Possible small effusion.")["No Finding"] == 0  # uncertain counts
    assert label_report("Heart size is stable. Lungs are clear.")["No Finding"] == 1


def _f1(corpus) -> tuple[float, dict[str, float]]:
    tp = {o: 0 for o in CHEXPERT_OBSERVATIONS}
    fp, fn = dict(tp), dict(tp)
    for text, gold in corpus:
        pred = label_report(text)
        for o in CHEXPERT_OBSERVATIONS:
            g, p = gold.get(o) == 1, pred.get(o) == 1
            tp[o] += g and p
            fp[o] += p and not g
            fn[o] += g and not p
    f = lambda t, p, n: 2 * t / (2 * t + p + n) if t + p + n else float("nan")  # noqa: E731
    micro = f(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return micro, {o: f(tp[o], fp[o], fn[o]) for o in CHEXPERT_OBSERVATIONS if tp[o] + fn[o]}


@pytest.mark.parametrize("name,corpus", [("development", REPORTS), ("held-out", HELD_OUT)])
def test_agreement_with_hand_labels(name, corpus):
    """Positive-label F1 against our own hand labels (README reports these numbers)."""
    micro, per_obs = _f1(corpus)
    print(name, "micro-F1", round(micro, 3), "macro-F1", round(sum(per_obs.values()) / len(per_obs), 3))
    assert micro >= 0.95
    assert min(per_obs.values()) >= 0.8, per_obs


def test_changes_still_read_on_real_style_text():
    text = ("Compared to ___, the right pneumothorax has decreased. New left lower lobe consolidation. "
            "Heart size is unchanged. Interval removal of the NG tube.")
    changes = extract_changes(text)
    assert changes["Pneumothorax"] == "decreased" and changes["Consolidation"] == "new"
    assert "Cardiomegaly" not in changes  # "heart size is unchanged" names no finding
