"""A MIMIC-sized rehearsal: an archive in the MIMIC-CXR-JPG layout, written without MIMIC.

``fedtar synth-mimic --out DIR --studies N`` writes what PhysioNet distributes, at any size,
so ``prepare -> pretrain -> simulate -> evaluate`` can be exercised end to end at MIMIC's
scale (227k studies) on machines without credentialed access::

    DIR/mimic-cxr-jpg/files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg    frontal (PA or AP) + lateral views
    DIR/mimic-cxr-jpg/files/pXX/pSUBJECT/sSTUDY.txt             free-text report (the -reports layout)
    DIR/mimic-cxr-jpg/mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz
    DIR/mimiciv/hosp/patients.csv.gz                            subject_id, gender, anchor_age, anchor_year, ...

Each subject has a disease course over 1-12 studies (effusions, edema, cardiomegaly,
atelectasis, pneumonia, pneumothorax, nodules, fractures, and the tubes and lines of ICU
stays); reports state it in MIMIC's phrasing (EXAMINATION/INDICATION/COMPARISON headers,
``___`` placeholders, FINDINGS and IMPRESSION, "Compared to the prior study ..." against the
previous study) and the CheXpert table agrees with the text (1 stated, -1 hedged, 0 negated,
blank unmentioned). Images come from the synthetic federation's renderer
(data_adapters.synthetic.images) so their shapes follow the findings. Everything is drawn from
numpy Generators seeded by (seed, subject), so the archive is the same bytes for a seed at any
worker count. The split is by subject, with more held out than MIMIC's 98/1/1 by default so that
small archives have test patients (``--split`` sets it).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .mimic_cxr import CHEXPERT, CHEXPERT_LABELS, METADATA, SPLIT
from .study_jobs import process_pool, resolve_workers
from .synthetic.images import render
from .synthetic.patients import make_site

log = logging.getLogger(__name__)

METADATA_HEADER = ("dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                   "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                   "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning")
SPLIT_HEADER = ("dicom_id", "study_id", "subject_id", "split")
CHEXPERT_HEADER = ("subject_id", "study_id", *CHEXPERT_LABELS)
PATIENTS_HEADER = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
MAX_STUDIES_PER_SUBJECT = 12
REPORT_TEMPLATE = (" " * 33 + "FINAL REPORT\n EXAMINATION:  {examination}\n \n INDICATION:  {indication}\n \n"
                   " TECHNIQUE:  {technique}\n \n COMPARISON:  {comparison}\n \n FINDINGS:\n \n{findings}\n \n"
                   " IMPRESSION:\n \n{impression}\n")


@dataclass
class RehearsalConfig:
    studies: int = 200                # total studies (MIMIC-CXR: 227,835)
    image_size: int = 512             # height of the JPGs (width 0.85x, as portrait radiographs)
    seed: int = 0
    lateral: float = 0.6              # share of PA studies with a lateral view besides the frontal one
    lateral_ap: float = 0.0           # the same for AP (portable) studies
    extra_frontal: float = 0.0        # share of studies with a second frontal image
    study_p: float = 0.3              # studies per subject ~ Geometric(study_p), at most 12
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, validate, test by subject
    workers: int = 0                  # processes; 0: the machine's cores
    quality: int = 95                 # JPEG quality (MIMIC-CXR-JPG used 95)


# MIMIC-CXR-JPG 2.0.0's proportions (`fedtar synth-mimic --mimic-counts`): 377,110 images in 227,835 studies
# of 65,379 subjects (3.48 studies and 1.66 images per study); the official split by subject has
# 222,758 / 1,808 / 3,269 studies in train / validate / test; about half the studies are PA (most with a
# lateral), the rest portable AP (some with one), and a few hold a second frontal image.
MIMIC_CXR_JPG = {"studies": 227_835, "split": (0.9777, 0.0079, 0.0144), "lateral": 0.9, "lateral_ap": 0.29,
                 "extra_frontal": 0.07, "study_p": 0.28}


@dataclass
class RehearsalArchive:
    root: Path                        # --root of `fedtar prepare mimic-cxr`
    patients: Path                    # --patients
    subjects: int
    studies: int
    images: int


def write_table(path: Path, header: tuple[str, ...] | list[str], rows: list[list[object]]) -> Path:
    """A CSV as MIMIC ships it; ``.gz`` paths are gzipped with a zero timestamp (same bytes each time)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)
    return path


def study_folder(files: Path, subject: str, study: str) -> Path:
    """files/pXX/pSUBJECT/sSTUDY: the images of a study; its report is that path + '.txt'."""
    return files / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


def format_report(findings: str, impression: str, examination: str = "CHEST (PA AND LAT)",
                  indication: str = "___ with cough", technique: str = "Chest PA and lateral",
                  comparison: str = "None.") -> str:
    """A report laid out as MIMIC-CXR's free text (headers, one-space indent, wrapped lines)."""
    return REPORT_TEMPLATE.format(examination=examination, indication=indication, technique=technique,
                                  comparison=comparison, findings=_wrap(findings), impression=_wrap(impression))


def _wrap(text: str, width: int = 78) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(f" {x}" for x in [*lines, line])


# --- the disease course ----------------------------------------------------------------------------

SIDES = ("left", "right", "bilateral")
SIZE_WORDS = ("", "small", "moderate", "large")
DEVICES = ("ett", "ng", "cvc", "pacemaker", "sternotomy", "chest_tube")


@dataclass
class _State:
    effusion: int = 0
    effusion_side: str = "bilateral"
    edema: int = 0
    cardiomegaly: int = 0
    atelectasis: int = 0
    atelectasis_side: str = "bilateral"
    pneumonia: int = 0          # 1 hedged, 2 stated
    pneumonia_lobe: str = "right lower lobe"
    pneumothorax: int = 0
    pneumothorax_side: str = "right"
    nodule: float = 0.0         # cm, 0: none
    nodule_lobe: str = "right upper lobe"
    fracture: bool = False
    thickening: bool = False
    mediastinum: bool = False
    devices: dict[str, str] = field(default_factory=dict)  # device -> its variant

    def copy(self) -> _State:
        return _State(**{**self.__dict__, "devices": dict(self.devices)})


LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "lingula", "left lower lobe")


def _step(rng: np.random.Generator, level: int, onset: float, top: int = 3) -> int:
    """Next severity 0..top: onset from 0, else resolve / improve / stay / worsen."""
    if level == 0:
        if rng.random() >= onset:
            return 0
        weights = np.array([0.55, 0.3, 0.15][:top])
        return 1 + int(rng.choice(top, p=weights / weights.sum()))
    u = rng.random()
    return 0 if u < 0.25 else max(level - 1, 0) if u < 0.45 else level if u < 0.75 else min(level + 1, top)


def _next_state(rng: np.random.Generator, prior: _State | None, age: float, icu: bool) -> _State:
    s = prior.copy() if prior else _State()
    old = 0.3 + 1.4 * (age - 20) / 70
    s.effusion = _step(rng, s.effusion, 0.12 * old)
    if s.effusion and (prior is None or not prior.effusion):
        s.effusion_side = SIDES[int(rng.integers(3))]
    s.edema = _step(rng, s.edema, 0.08 * old)
    s.cardiomegaly = s.cardiomegaly if s.cardiomegaly and rng.random() < 0.85 else _step(rng, s.cardiomegaly,
                                                                                        0.1 * old)
    s.atelectasis = _step(rng, s.atelectasis, 0.2 if icu else 0.1, top=2)
    if s.atelectasis and (prior is None or not prior.atelectasis):
        s.atelectasis_side = SIDES[int(rng.integers(3))]
    s.pneumonia = _step(rng, s.pneumonia, 0.1, top=2)
    if s.pneumonia and (prior is None or not prior.pneumonia):
        s.pneumonia_lobe = LOBES[int(rng.integers(len(LOBES)))]
    s.pneumothorax = _step(rng, s.pneumothorax, 0.04 + 0.06 * ("chest_tube" in s.devices), top=2)
    if s.pneumothorax and (prior is None or not prior.pneumothorax):
        s.pneumothorax_side = ("left", "right")[int(rng.integers(2))]
    if not s.nodule and rng.random() < 0.04:
        s.nodule, s.nodule_lobe = round(float(rng.uniform(0.4, 2.5)), 1), LOBES[int(rng.integers(len(LOBES)))]
    s.fracture = s.fracture or rng.random() < 0.03
    s.thickening = s.thickening or rng.random() < 0.03
    s.mediastinum = rng.random() < 0.02
    variants = {"ett": 3, "ng": 3, "cvc": 4, "pacemaker": 2, "sternotomy": 2, "chest_tube": 2}
    for device, onset, stay in (("ett", 0.5, 0.6), ("ng", 0.45, 0.6), ("cvc", 0.5, 0.7), ("chest_tube", 0.08, 0.5),
                                ("pacemaker", 0.02, 1.0), ("sternotomy", 0.02, 1.0)):
        if device in s.devices:
            if rng.random() > stay:
                del s.devices[device]
        elif rng.random() < (onset if icu or device in ("pacemaker", "sternotomy") else 0.01):
            s.devices[device] = str(int(rng.integers(variants[device])))
    return s


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _side_phrase(side: str, finding: str) -> str:
    return f"bilateral {finding}s" if side == "bilateral" else f"{side} {finding}"


def _device_sentences(rng: np.random.Generator, s: _State, prior: _State | None) -> list[str]:
    out = []
    for device in DEVICES:
        if device not in s.devices:
            if prior is not None and device in prior.devices and device in ("ett", "ng", "cvc", "chest_tube"):
                name = {"ett": "endotracheal tube", "ng": "nasogastric tube", "cvc": "central venous catheter",
                        "chest_tube": "chest tube"}[device]
                out.append(_pick(rng, (f"Interval removal of the {name}.", f"The {name} has been removed.")))
            continue
        v, cm = int(s.devices[device]), int(rng.integers(2, 7))
        new = prior is not None and device not in prior.devices
        text = {
            "ett": (f"Endotracheal tube terminates {cm} cm above the carina.",
                    f"The endotracheal tube tip is {cm} cm above the carina.",
                    "ET tube is in standard position."),
            "ng": ("Nasogastric tube courses below the diaphragm with the tip out of view.",
                   "An enteric tube passes into the stomach.", "NG tube tip is in the stomach."),
            "cvc": ("Right internal jugular central venous catheter terminates in the mid SVC.",
                    "Left subclavian line tip is in the distal SVC.",
                    "Right PICC line tip is at the cavoatrial junction.",
                    "Right IJ catheter tip projects over the upper SVC."),
            "pacemaker": ("Left chest wall pacemaker with leads in the right atrium and right ventricle.",
                          "Dual-lead pacemaker device is unchanged in position."),
            "sternotomy": ("Median sternotomy wires are intact.",
                           "Patient is status post median sternotomy and CABG."),
            "chest_tube": ("Right-sided chest tube remains in place.", "A left basilar pigtail catheter is present."),
        }[device][v]
        if new and device in NEW_DEVICE:
            text = NEW_DEVICE[device].format(cm=cm)
        out.append(text)
    return out


NEW_DEVICE = {
    "ett": "The patient has been intubated; the endotracheal tube terminates {cm} cm above the carina.",
    "ng": "A nasogastric tube has been placed, with the tip in the stomach.",
    "cvc": "Interval placement of a right internal jugular central venous catheter, which terminates in the mid SVC.",
}


def _change(before: float, now: float) -> str:
    return "new" if not before and now else "resolved" if before and not now else \
        "increased" if now > before else "decreased" if now < before else "unchanged"


def _findings_text(rng: np.random.Generator, s: _State, prior: _State | None) -> tuple[list[str], list[str],
                                                                                      dict[str, float]]:
    """Findings sentences, impression sentences, CheXpert values (1 stated, -1 hedged, 0 negated)."""
    body: list[str] = []
    key: list[str] = []
    labels: dict[str, float] = {}
    changed = (lambda a: _change(getattr(prior, a), getattr(s, a))) if prior else (lambda a: "")
    if prior is not None:
        body.append(_pick(rng, ("Compared to the prior study there is",
                                "As compared to the previous radiograph, there is",
                                "In comparison with the study of ___, there is",
                                "Comparison is made to the prior study from ___. There is")) + " "
                    + ("no relevant change." if not any(changed(a) not in ("unchanged", "") for a in
                                                         ("effusion", "edema", "pneumonia", "pneumothorax",
                                                          "atelectasis", "cardiomegaly"))
                       else "interval change as described below."))
    devices = _device_sentences(rng, s, prior)
    body += devices
    if s.devices:
        labels["Support Devices"] = 1.0
    # heart and mediastinum
    if s.cardiomegaly:
        word = ("", "mildly", "moderately", "severely")[s.cardiomegaly]
        sentence = _pick(rng, (f"The heart is {word} enlarged.", f"The cardiac silhouette is {word} enlarged.",
                               f"{('Mild', 'Moderate', 'Severe')[s.cardiomegaly - 1]} cardiomegaly is present."))
        if changed("cardiomegaly") == "unchanged":
            sentence = sentence[:-1] + ", unchanged."
        body.append(sentence)
        key.append(f"{('Mild', 'Moderate', 'Severe')[s.cardiomegaly - 1]} cardiomegaly.")
        labels["Cardiomegaly"] = 1.0
    else:
        body.append(_pick(rng, ("Heart size is normal.", "The heart size is normal.",
                                "The cardiomediastinal silhouette is within normal limits.",
                                "Cardiac and mediastinal silhouettes are stable.")))
        labels["Cardiomegaly"] = 0.0
    if s.mediastinum:
        body.append("The mediastinum appears widened, which may be due to patient positioning.")
        labels["Enlarged Cardiomediastinum"] = -1.0
    # fluid
    if s.edema:
        text = ("Mild pulmonary vascular congestion.", "Moderate pulmonary edema.",
                "Severe pulmonary edema with perihilar haziness.")[s.edema - 1]
        ch = changed("edema")
        if ch in ("increased", "decreased"):
            text = _pick(rng, (f"Pulmonary edema has {ch}, now {text[0].lower()}{text[1:-1]}.",
                               f"Interval {'worsening' if ch == 'increased' else 'improvement'} in pulmonary "
                               "edema."))
        body.append(text)
        key.append(text)
        labels["Edema"] = 1.0
    elif prior is not None and prior.edema:
        body.append("Interval resolution of pulmonary edema.")
        labels["Edema"] = 0.0
    else:
        body.append(_pick(rng, ("No pulmonary edema.", "There is no pulmonary vascular congestion.",
                                "Pulmonary vasculature is normal.")))
        labels["Edema"] = 0.0
    if s.effusion:
        size = SIZE_WORDS[s.effusion]
        text = f"{size.capitalize()} {_side_phrase(s.effusion_side, 'pleural effusion')}"
        ch = changed("effusion")
        if s.atelectasis and s.atelectasis_side == "bilateral" and s.effusion_side == "bilateral":
            text += " with bibasilar atelectasis"
            labels["Atelectasis"] = 1.0
        elif s.atelectasis and rng.random() < 0.5:
            text += " with adjacent atelectasis"
            labels["Atelectasis"] = 1.0
        text += {"unchanged": ", unchanged.", "increased": ", increased from the prior study.",
                 "decreased": ", decreased in size.", "new": ", new since the prior exam."}.get(ch, ".")
        body.append(text)
        key.append(text)
        labels["Pleural Effusion"] = 1.0
    elif prior is not None and prior.effusion:
        body.append(_pick(rng, ("Previously seen pleural effusion has resolved.",
                                "Interval resolution of the pleural effusion.")))
        labels["Pleural Effusion"] = 0.0
    if s.atelectasis and "Atelectasis" not in labels:
        text = ("Minimal" if s.atelectasis == 1 else "Moderate") + " " + (
            "bibasilar atelectasis." if s.atelectasis_side == "bilateral" else
            f"{s.atelectasis_side} basilar atelectasis.")
        body.append(text)
        labels["Atelectasis"] = 1.0
    # airspace disease
    if s.pneumonia == 2:
        text = _pick(rng, (f"Focal consolidation in the {s.pneumonia_lobe} concerning for pneumonia.",
                           f"New opacity in the {s.pneumonia_lobe} is consistent with pneumonia."
                           if changed("pneumonia") == "new" else
                           f"Consolidation in the {s.pneumonia_lobe} is compatible with pneumonia."))
        body.append(text)
        key.append(f"{s.pneumonia_lobe.capitalize()} pneumonia.")
        labels.update({"Consolidation": 1.0, "Pneumonia": 1.0, "Lung Opacity": 1.0})
    elif s.pneumonia == 1:
        body.append(f"Patchy opacity in the {s.pneumonia_lobe} may reflect atelectasis, though infection cannot "
                    "be excluded.")
        key.append(f"Patchy {s.pneumonia_lobe} opacity, possibly pneumonia in the appropriate clinical setting.")
        labels.update({"Pneumonia": -1.0, "Lung Opacity": 1.0})
    elif not s.edema and not s.atelectasis:
        body.append(_pick(rng, ("The lungs are clear.", "Lungs are clear without focal consolidation.",
                                "No focal consolidation is seen.")))
        labels.update({"Consolidation": 0.0, "Pneumonia": 0.0})
    if s.pneumothorax:
        text = f"{('Tiny', 'Small')[s.pneumothorax - 1]} {s.pneumothorax_side} apical pneumothorax."
        body.append(text)
        key.append(text)
        labels["Pneumothorax"] = 1.0
    else:
        body.append(_pick(rng, ("No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen.",
                                "No pleural effusion or pneumothorax." if not s.effusion else "No pneumothorax.")))
        labels["Pneumothorax"] = 0.0
        if not s.effusion and "effusion" in body[-1]:
            labels["Pleural Effusion"] = 0.0
    if not s.effusion and "Pleural Effusion" not in labels:
        body.append(_pick(rng, ("No pleural effusion.", "There is no pleural effusion.")))
        labels["Pleural Effusion"] = 0.0
    if s.nodule:
        text = f"A {s.nodule} cm nodular opacity in the {s.nodule_lobe}."
        body.append(text)
        key.append(f"{s.nodule} cm {s.nodule_lobe} nodule. Recommend chest CT for further evaluation.")
        labels["Lung Lesion"] = 1.0
    if s.thickening:
        body.append("Mild biapical pleural thickening.")
        labels["Pleural Other"] = 1.0
    if s.fracture:
        body.append(_pick(rng, ("Old healed left rib fractures are noted.", "Chronic deformity of the right clavicle.",
                                "Healed fracture of the right posterior sixth rib.")))
        labels["Fracture"] = 1.0
    else:
        body.append(_pick(rng, ("No acute osseous abnormality.", "Bony structures are intact.",
                                "Degenerative changes of the thoracic spine are noted.",
                                "Osseous structures are unremarkable.")))
    if rng.random() < 0.15:
        body.append(_pick(rng, ("Lung volumes are low.", "Calcification of the aortic knob.",
                                "Surgical clips in the right upper quadrant.",
                                "Mild elevation of the right hemidiaphragm.")))
    if not any(v in (1.0, -1.0) for k, v in labels.items() if k != "Support Devices"):
        labels["No Finding"] = 1.0
    impression = key or [_pick(rng, ("No acute cardiopulmonary process.", "No acute intrathoracic process.",
                                     "No evidence of pneumonia."))]
    if s.devices and not key:
        impression = ["Lines and tubes in appropriate position.", "No acute cardiopulmonary process."]
    return body, impression, labels


# --- one subject -----------------------------------------------------------------------------------

def _subject_id(index: int) -> str:
    return str(10000000 + (7919 * index + 32) % 9_000_000)


def _study_id(index: int, k: int) -> str:
    return str(50000000 + (3162277 * (index * MAX_STUDIES_PER_SUBJECT + k) + 1234567) % 10_000_000)


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, 5))


def _render(s: _State, frontal: str, size: int, year: int, seed: int, rng: np.random.Generator,
            lateral: bool) -> Image.Image:
    severity = {"Cardiomegaly": s.cardiomegaly, "Pleural Effusion": s.effusion, "Edema": s.edema,
                "Consolidation": 2 * (s.pneumonia == 2), "Pneumothorax": s.pneumothorax,
                "Atelectasis": s.atelectasis, "Lung Lesion": int(s.nodule > 0) * 2,
                "Support Devices": int(bool(s.devices))}
    sides = {"Pleural Effusion": "right" if s.effusion_side == "right" else "left",
             "Pneumothorax": s.pneumothorax_side, "Atelectasis": "right" if s.atelectasis_side == "right" else "left",
             "Consolidation": "left" if s.pneumonia_lobe.startswith(("left", "lingula")) else "right",
             "Lung Lesion": "left" if s.nodule_lobe.startswith(("left", "lingula")) else "right"}
    site = make_site(seed, 1 if frontal == "AP" else 0, "mimic")
    pixels = render(severity, sides, site, year, size, rng)
    if lateral:
        pixels = np.ascontiguousarray(np.roll(pixels[:, ::-1], size // 7, axis=1))
    width = round(0.85 * size)
    left = (size - width) // 2
    return Image.fromarray(pixels[:, left:left + width], mode="L")


def _year_group(rng: np.random.Generator) -> str:
    start = 2008 + 3 * int(rng.integers(0, 4))
    return f"{start} - {start + 2}"


def _subject(args: tuple[int, int, Path, RehearsalConfig]) -> dict[str, list]:
    """Write one subject's images and reports; return its table rows."""
    index, n_studies, root, cfg = args
    rng = np.random.default_rng([cfg.seed, 104729, index])
    subject = _subject_id(index)
    gender = "F" if rng.random() < 0.48 else "M"
    anchor_year = int(rng.integers(2110, 2200))
    anchor_age = int(np.clip(rng.normal(62, 17), 18, 91))
    u = rng.random()
    split = "train" if u < cfg.split[0] else "validate" if u < cfg.split[0] + cfg.split[1] else "test"
    when = dt.datetime(anchor_year, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3 * 365)),
                                                         seconds=int(rng.integers(0, 86400)))
    rows: dict[str, list] = {"metadata": [], "split": [], "chexpert": [],
                             "patients": [[subject, gender, anchor_age, anchor_year,
                                           _year_group(rng), ""]], "images": [0]}
    state: _State | None = None
    icu = rng.random() < 0.35
    for k in range(n_studies):
        if k:
            gap = rng.choice([int(rng.integers(0, 3)), int(rng.integers(3, 60)), int(rng.integers(60, 900))],
                             p=[0.3 if icu else 0.05, 0.35, 0.35 if icu else 0.6])
            when += dt.timedelta(days=int(gap), seconds=int(rng.integers(3600, 80000)))
            icu = icu if rng.random() < 0.7 else not icu
        age = anchor_age + when.year - anchor_year
        prior, state = state, _next_state(rng, state, age, icu)
        study = _study_id(index, k)
        folder = study_folder(root / "files", subject, study)
        folder.mkdir(parents=True, exist_ok=True)
        frontal = "AP" if icu or state.devices.keys() & {"ett", "cvc"} else "PA"
        lateral = cfg.lateral if frontal == "PA" else cfg.lateral_ap  # (no draw at 0: archives stay the same bytes)
        views = [frontal] + ([frontal] if cfg.extra_frontal and rng.random() < cfg.extra_frontal else []) \
            + (["LATERAL"] if lateral and rng.random() < lateral else [])
        both = "LATERAL" in views
        date, time = when.strftime("%Y%m%d"), f"{when.strftime('%H%M%S')}.{int(rng.integers(0, 1000)):03d}"
        description = "CHEST (PORTABLE AP)" if frontal == "AP" else "CHEST (PA AND LAT)" if both \
            else "CHEST (PA)"
        year = int(np.clip(2011 + (when.year - anchor_year) % 6, 2011, 2016))
        for view in views:
            dicom_id = _dicom_id(rng)
            image = _render(state, frontal, cfg.image_size, year, cfg.seed, rng, view == "LATERAL")
            image.save(folder / f"{dicom_id}.jpg", quality=cfg.quality)
            rows["metadata"].append([dicom_id, subject, study, description, view, image.height, image.width, date,
                                     time, "CHEST (PA AND LAT)" if both else description,
                                     "postero-anterior" if view == "PA" else "antero-posterior" if view == "AP"
                                     else "lateral", "Erect" if view != "AP" else "Recumbent"])
            rows["split"].append([dicom_id, study, subject, split])
            rows["images"][0] += 1
        body, impression, labels = _findings_text(rng, state, prior)
        age_text = f"___ year old {'woman' if gender == 'F' else 'man'}" if rng.random() < 0.5 else f"___{gender}"
        reason = _pick(rng, ("with shortness of breath", "with cough and fever, evaluate for pneumonia",
                             "with chest pain", "intubated, evaluate tube placement", "with hypoxia",
                             "status post line placement", "with CHF exacerbation", "with fall, evaluate for fracture"))
        text = format_report(" ".join(body), " ".join(impression), description, f"{age_text} {reason}.",
                             "Portable AP chest radiograph." if frontal == "AP" else
                             "Chest PA and lateral." if both else "Chest PA.",
                             "___" if prior is not None else "None.")
        (folder.parent / f"s{study}.txt").write_text(text)
        rows["chexpert"].append([subject, study, *(labels.get(name, "") for name in CHEXPERT_LABELS)])
    return rows


def _plan(cfg: RehearsalConfig) -> list[int]:
    """Studies per subject, summing to cfg.studies (drawn in one process: same plan at any worker count)."""
    rng = np.random.default_rng([cfg.seed, 15485863])
    counts, total = [], 0
    while total < cfg.studies:
        counts.append(min(int(rng.geometric(cfg.study_p)), MAX_STUDIES_PER_SUBJECT, cfg.studies - total))
        total += counts[-1]
    return counts


def write_rehearsal(out: str | Path, cfg: RehearsalConfig = RehearsalConfig(), progress: bool = False
                    ) -> RehearsalArchive:
    """Write the rehearsal archive under OUT (see the module docstring); returns where prepare reads it."""
    if cfg.studies < 1 or cfg.image_size < 8:
        raise ValueError(f"need at least 1 study and an image size of at least 8 (got {cfg.studies}, "
                         f"{cfg.image_size})")
    out = Path(out)
    root, patients = out / "mimic-cxr-jpg", out / "mimiciv" / "hosp" / "patients.csv.gz"
    if (root / "files").exists():
        raise ValueError(f"{root}: already holds an archive (files/); write the rehearsal to a new folder")
    counts = _plan(cfg)
    jobs = [(i, n, root, cfg) for i, n in enumerate(counts)]
    workers = resolve_workers(cfg.workers, len(jobs))
    tables: dict[str, list] = {"metadata": [], "split": [], "chexpert": [], "patients": [], "images": [0]}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.studies, unit="study", desc="synth-mimic")

    def collect(rows: dict[str, list], n: int) -> None:
        for name in ("metadata", "split", "chexpert", "patients"):
            tables[name] += rows[name]
        tables["images"][0] += rows["images"][0]
        if bar is not None:
            bar.update(n)

    if workers == 1:
        for job in jobs:
            collect(_subject(job), job[1])
    else:
        with process_pool(workers) as pool:  # ordered: the tables are the same bytes at any worker count
            for job, rows in zip(jobs, pool.imap(_subject, jobs, chunksize=4)):
                collect(rows, job[1])
    if bar is not None:
        bar.close()
    write_table(root / f"{METADATA}.gz", METADATA_HEADER, tables["metadata"])
    write_table(root / f"{SPLIT}.gz", SPLIT_HEADER, tables["split"])
    write_table(root / f"{CHEXPERT}.gz", CHEXPERT_HEADER, tables["chexpert"])
    write_table(patients, PATIENTS_HEADER, tables["patients"])
    return RehearsalArchive(root, patients, len(counts), cfg.studies, tables["images"][0])
