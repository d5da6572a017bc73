"""A test corpus of radiology reports with planted PHI, and the recall / over-removal measure.

Each report mixes realistic sentences (chest radiograph and CT phrasing, MIMIC-style headers
and ``___``) with planted identifiers of every kind the scrubber must remove: the adapter's
known identifiers, people's names near the cues reports use, dates in the common written
forms, times, phone and fax numbers, e-mails, URLs, record numbers, street addresses and
ages over 89. The medical tokens each sentence carries must survive. Names come from a pool
the scrubber never sees (it looks for shapes and cues, not lists).

``python tests/phi_corpus.py [--reports N] [--seed S]`` prints the figures the README quotes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

FIRST = ("James", "Mary", "Robert", "Patricia", "Wei", "Aisha", "Kenji", "Olga", "Mateo", "Priya", "Grace",
         "Liam", "Fatima", "Hiroshi", "Chloe", "Dmitri", "Amara", "Santiago", "Ingrid", "Kwame", "Rose", "Hope")
LAST = ("Smith", "Nguyen", "Okafor", "Tanaka", "Kowalski", "O'Brien", "McDonald", "Garcia-Lopez", "Haddad",
        "Johansson", "Ogawa", "Patel", "Schmidt", "Rossi", "Ivanova", "Mensah", "Fitzgerald", "Baker", "Young")
STREETS = ("Main Street", "Oak Ave", "Beacon St", "Longwood Avenue", "Maple Drive", "Elm Rd", "Harbor Boulevard",
           "Cedar Lane", "5th Avenue", "Washington Street")
CITIES = (("Boston", "MA", "02115"), ("Chicago", "IL", "60611"), ("San Diego", "CA", "92103"),
          ("Ann Arbor", "MI", "48109"), ("Houston", "TX", "77030"))
DOMAINS = ("hospital.org", "mail.example.com", "radiology.example.edu", "gmail.com")

# (sentence, medical tokens in it that must survive)
MEDICAL = (
    ("Compression deformity of T12 is unchanged.", ["T12", "Compression deformity"]),
    ("Degenerative disc disease at C5-6 and L4-L5.", ["C5-6", "L4-L5", "Degenerative"]),
    ("A 2 cm nodule in the left lower lobe is again seen.", ["2 cm", "left lower lobe", "nodule"]),
    ("There is a 3.5 x 2.1 cm mass in the right upper lobe.", ["3.5 x 2.1 cm", "right upper lobe"]),
    ("NG tube tip is in the stomach.", ["NG tube", "stomach"]),
    ("AP and PA views of the chest were obtained.", ["AP", "PA", "chest"]),
    ("Right IJ central venous catheter terminates in the SVC.", ["Right IJ", "SVC"]),
    ("Mild cardiomegaly, heart size about 55% of the thoracic width.", ["cardiomegaly", "55%"]),
    ("Lung volumes are low; atelectasis at both bases x 2 views.", ["x 2", "atelectasis"]),
    ("See series 3 image 45 for the nodule.", ["series 3 image 45"]),
    ("A 14Fr pigtail catheter is in the right pleural space.", ["14Fr", "pigtail"]),
    ("Fracture of the left 5th rib and L1 transverse process.", ["5th rib", "L1"]),
    ("Endotracheal tube ends 4 cm above the carina.", ["4 cm", "carina", "Endotracheal tube"]),
    ("PICC line tip at the cavoatrial junction.", ["PICC", "cavoatrial junction"]),
    ("May represent atelectasis or early pneumonia.", ["May represent", "pneumonia"]),
    ("Small bilateral pleural effusions, left greater than right.", ["pleural effusions", "left greater than right"]),
    ("Kerley B lines and vascular congestion suggest CHF.", ["Kerley B lines", "CHF"]),
    ("Dobhoff tube courses below the diaphragm.", ["Dobhoff tube", "diaphragm"]),
    ("Findings consistent with COVID-19 pneumonia.", ["COVID-19"]),
    ("Swan-Ganz catheter tip in the right pulmonary artery.", ["Swan-Ganz catheter", "right pulmonary artery"]),
    ("Hyperinflated lungs compatible with COPD.", ["COPD", "Hyperinflated"]),
    ("Spinal fusion hardware spans T10-T12.", ["T10-T12", "hardware"]),
    ("Nodule measures 8 mm, previously 6 mm; 1.2 cm lymph node.", ["8 mm", "6 mm", "1.2 cm"]),
    ("Density measures 45 Hounsfield units.", ["45 Hounsfield units"]),
    ("Sternotomy wires and CABG clips are intact.", ["Sternotomy wires", "CABG"]),
    ("Opacity in the retrocardiac region, 10-12 mm.", ["retrocardiac", "10-12 mm"]),
    ("Tip of the Port-A-Cath projects over the SVC.", ["Port-A-Cath", "SVC"]),
    ("No pneumothorax on the upright frontal view.", ["pneumothorax", "upright frontal view"]),
    ("Foley catheter and ET tube in place.", ["Foley catheter", "ET tube"]),
    ("The aorta is tortuous; calcified granuloma in the RUL.", ["RUL", "calcified granuloma"]),
)


# PHI-free report sentences (devices, eponyms, spine levels, measurements, scores, lab values):
# the scrubber must leave every one unchanged.
CLEAN_SENTENCES = (
    'PA and lateral views of the chest provided. There is no focal consolidation, effusion, or pneumothorax.',
    'The cardiomediastinal silhouette is normal. Imaged osseous structures are intact. No free air below the right hemidiaphragm.',
    'Interval placement of a left-sided PICC with tip in the mid SVC. ET tube terminates 5.2 cm above the carina.',
    'Compared to the prior study there is no significant interval change. Moderate cardiomegaly is stable.',
    'Right IJ catheter tip is at the cavoatrial junction. NG tube courses below the diaphragm with tip in the stomach, side port near the GE junction.',
    'Mild pulmonary vascular congestion. Small bilateral pleural effusions with bibasilar atelectasis.',
    'Multilevel degenerative changes of the thoracic spine; mild anterior wedging of T11 and T12, unchanged.',
    'A 1.4 x 1.1 cm nodule in the right middle lobe (series 4, image 112) is new since the prior exam.',
    'Status post median sternotomy and CABG. Left chest wall dual-lead pacemaker with leads in the right atrium and right ventricle.',
    'Heart size is top normal. Aortic knob calcifications. Lungs are hyperinflated with flattening of the diaphragms suggesting COPD.',
    'Opacity at the left base may reflect atelectasis, although infection cannot be excluded in the appropriate clinical setting.',
    'Recommend followup CT in 3 months. Consider CTA to exclude PE if clinically indicated.',
    'Patchy opacities in the right lower lobe concerning for aspiration pneumonia. Findings were discussed with the referring team.',
    'There is a 9 mm calcified granuloma in the left upper lobe. Kerley B lines and peribronchial cuffing consistent with interstitial edema.',
    'Compression fracture of L1 with 30% height loss. Disc space narrowing at L4-5 and L5-S1. Grade 1 anterolisthesis of L4 on L5.',
    'Port-A-Cath via the right subclavian approach terminates in the low SVC. Dobhoff tube tip in the proximal duodenum.',
    'Moderate hiatal hernia. Surgical clips in the right upper quadrant from prior cholecystectomy.',
    'The tip of the Swan-Ganz catheter is in the right descending pulmonary artery. Impella device is in place.',
    'Chest tube in the right apex, unchanged. Small right apical pneumothorax, less than 10%. No tension.',
    'Sclerotic lesion in the T7 vertebral body measuring 12 mm. Healed fractures of the left 6th through 8th ribs.',
    'Two views of the chest. COVID-19 pneumonia with multifocal ground-glass opacities, increased over 48 hours.',
    'AP portable upright view at 45 degrees. Findings as above. Mediastinal lymph node measures 15 x 11 mm.',
    'Heart size normal for AP technique. Left ventricular assist device (LVAD) in place. Hounsfield units of 40 to 60.',
    'Recommend PA and lateral when the patient is able. ICU film. Bilateral hilar adenopathy.',
    'Status post right upper lobectomy. Post-operative changes. The cardiac silhouette is enlarged, CTR 0.6.',
    'Sarcoidosis stage 2. ILD with UIP pattern. FVC 65% predicted. DLCO 40%. Wegener granulomatosis is a consideration.',
    'There are bilateral nipple shadows. Mach band effect. Pectus excavatum. Scoliosis convex to the right.',
    'Endotracheal tube 3 cm above carina; OG tube in stomach. Bilateral chest tubes x 2. CVC via left IJ.',
    'No change since prior from ___. ___ year old woman with cough. Comparison: ___. Discussed with Dr. ___ at ___ on ___.',
    'IMPRESSION: 1. No acute cardiopulmonary process. 2. Stable 4 mm nodule, no follow-up needed per Fleischner guidelines.',
    'BI-RADS 2. LI-RADS 3. Lung-RADS 4A. TI-RADS TR3. The 99mTc scan. I-131 therapy. F-18 FDG PET/CT, SUV max 4.5.',
    'The patient is a 45 year old man. 3D reconstructions obtained. T2-weighted images. DWI b1000. 1.5T scanner. 120 kVp.',
    'Heart rate 110 bpm. SpO2 92%. pH 7.35. WBC 12.5. Lactate 2.1. INR 1.2. BNP 1500. Troponin 0.04.',
    'Pleural effusion of 500 mL drained. 1000 mL output. Trendelenburg position. Valsalva maneuver. Hampton hump. Westermark sign.',
    'Pancoast tumor at the right apex. Boerhaave syndrome excluded. Chilaiditi sign. Luftsichel sign. Golden S sign.',
    'Per protocol, the study was performed by the technologist. Reviewed by the attending radiologist.',
    'Findings communicated to the ordering provider via the critical results system.',
)


@dataclass
class Planted:
    kind: str
    surface: str                       # the text as planted
    must_not_survive: list[str]        # substrings/words whose presence in the output is a leak


@dataclass
class PlantedReport:
    text: str
    identifiers: list[str]             # what the adapter knows (header id, name, accession, birth date)
    planted: list[Planted] = field(default_factory=list)
    medical: list[str] = field(default_factory=list)


def _date_forms(d: dt.date, rng: random.Random) -> str:
    month = d.strftime("%B")
    forms = (f"{d.month:02d}/{d.day:02d}/{d.year}", f"{d.month}/{d.day}/{d.year % 100:02d}", d.isoformat(),
             f"{month[:3]} {d.day} {d.year}", f"{month} {d.day}, {d.year}", f"{d.day} {month[:3]} {d.year}",
             f"{d.day}-{month[:3]}-{d.year}", d.strftime("%Y%m%d"), f"{month} {d.day}",
             f"{d.day} {month}", f"{month} {d.year}", f"{d.month:02d}/{d.year}")
    return rng.choice(forms)


def _phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    return rng.choice((f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
                       f"{a}-{b}-{c:04d} ext. {rng.randint(10, 9999)}"))


def _record_number(rng: random.Random) -> tuple[str, str]:
    digits = str(rng.randint(10**5, 10**9))
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(rng.randint(1, 3)))
    value = rng.choice((digits, f"{letters}{digits}", f"{letters}-{digits}", f"{digits[:3]}-{digits[3:]}"))
    label = rng.choice(("MRN", "MRN:", "Medical record number", "accession", "Accession #", "Acc No.",
                        "patient ID", "ID:", "encounter number", "record #", "order number"))
    return label, value


def _name(rng: random.Random) -> tuple[str, str, list[str]]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    middle = rng.choice(("", f" {rng.choice('ABCDEFGHJKLMNPRSTW')}."))
    full = f"{first}{middle} {last}"
    return first, full, [first, last]


def _sentence(kind: str, rng: random.Random, visit: dt.date) -> tuple[str, list[Planted]]:
    """One sentence carrying one planted identifier of `kind`."""
    if kind == "name":
        first, full, parts = _name(rng)
        last = parts[1]
        title = rng.choice(("Dr.", "Dr", "Mr.", "Ms.", "Mrs."))
        text = rng.choice((
            f"Findings were discussed with {title} {last} by telephone.",
            f"Findings d/w {full}, MD at the time of the study.",
            f"These results were communicated to {title} {full}.",
            f"Discussed with {full}, RN, who will relay to the team.",
            f"Electronically signed by {full}, M.D.",
            f"Attending: {full}",
            f"Wet read by {title} {last}.",
            f"{full} was notified of the findings.",
            f"Patient {full} was seen in the emergency department.",
            f"Dr. {last}'s team was paged.",
            f"Per {title} {full}, the line was repositioned.",
            f"Reviewed with {title} {full.upper()}.",
            f"Spoke with {first} {last} of the ICU team.",
        ))
        return text, [Planted("name", full, parts)]
    if kind == "date":
        d = visit - dt.timedelta(days=rng.randint(30, 900))
        surface = _date_forms(d, rng)
        text = rng.choice((f"Comparison is made to the prior study of {surface}.",
                           f"Compared to radiograph from {surface}, the effusion has increased.",
                           f"DOB: {surface}.", f"Since the exam on {surface}, the tube was removed.",
                           f"Prior CT dated {surface} showed the same nodule."))
        return text, [Planted("date", surface, [surface])]
    if kind == "time":
        surface = rng.choice((f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(('AM', 'PM', 'a.m.'))}",
                              f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                              f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d} hours"))
        text = rng.choice((f"The study was performed at {surface}.", f"Findings called at {surface}.",
                           f"WET READ: ___ {surface}"))
        return text, [Planted("time", surface, [surface])]
    if kind == "phone":
        surface = _phone(rng)
        cue = rng.choice(("Please call", "Reading room phone", "Fax results to", "Contact the radiologist at",
                          "Questions:"))
        return f"{cue} {surface}.", [Planted("phone", surface, _digit_runs(surface))]
    if kind == "pager":
        surface = str(rng.randint(10000, 99999)) if rng.random() < 0.5 else f"{rng.randint(1, 9)}-{rng.randint(1000, 9999)}"
        return f"Page the resident at pager {surface}.", [Planted("phone", surface, _digit_runs(surface, 4))]
    if kind == "email":
        first, _, parts = _name(rng)
        surface = f"{first.lower()}.{parts[1].lower().replace(chr(39), '')}@{rng.choice(DOMAINS)}"
        return f"Send the images to {surface} for review.", [Planted("email", surface, [surface, parts[1]])]
    if kind == "url":
        surface = rng.choice(("https://pacs.hospital.org/viewer?study=", "http://www.example-clinic.com/r/",
                              "www.radiology-portal.net/case/")) + str(rng.randint(1000, 99999))
        return f"Images available at {surface} for referring clinicians.", [Planted("url", surface, [surface])]
    if kind == "record":
        label, value = _record_number(rng)
        return f"{label} {value}.", [Planted("record", value, [value, *_digit_runs(value)])]
    if kind == "address":
        number, street = rng.randint(1, 9999), rng.choice(STREETS)
        city, state, zipcode = rng.choice(CITIES)
        unit = rng.choice(("", f", Apt {rng.randint(1, 40)}{rng.choice('ABC')}"))
        surface = f"{number} {street}{unit}, {city}, {state} {zipcode}"
        return (f"Patient lives at {surface}.",
                [Planted("address", surface, [f"{number} {street}", zipcode])])
    if kind == "age":
        age = rng.randint(90, 104)
        surface = rng.choice((f"{age}-year-old", f"{age} year old", f"{age} yo", f"age {age}", f"aged {age}"))
        return f"History: {surface} woman with shortness of breath.", [Planted("age", surface, [str(age)])]
    raise ValueError(kind)


def _digit_runs(s: str, minimum: int = 4) -> list[str]:
    return [d for d in re.findall(r"\d+", s) if len(d) >= minimum]


KINDS = ("name", "name", "date", "date", "time", "phone", "pager", "email", "url", "record", "address", "age")


def generate(n: int = 300, seed: int = 0) -> list[PlantedReport]:
    rng = random.Random(seed)
    reports = []
    for _ in range(n):
        visit = dt.date(rng.randint(2005, 2024), rng.randint(1, 12), rng.randint(1, 28))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        pid = rng.choice((f"MRN-{rng.randint(10**5, 10**7)}", str(rng.randint(10**6, 10**8)),
                          f"{rng.randint(10**7, 10**8 - 1)}"))
        accession = f"ACC{rng.randint(1000, 99999)}"
        known = [pid, f"{last.upper()}^{first.upper()}", accession]
        sentences = [s for s, _ in rng.sample(MEDICAL, 4)]
        medical = [t for s, toks in MEDICAL if s in sentences for t in toks]
        planted: list[Planted] = []
        footer = []
        for kind in rng.sample(KINDS, 4):
            text, ps = _sentence(kind, rng, visit)
            if text.startswith(("Electronically signed", "Attending:")):
                footer.append(text)  # signature blocks sit on their own line
            else:
                sentences.insert(rng.randint(0, len(sentences)), text)
            planted += ps
        header = rng.choice((f"Patient {first} {last} ({pid}), accession {accession}.",
                             f"EXAMINATION: CHEST (PA AND LAT) for {last.upper()}, {first.upper()} MRN {pid}",
                             f"INDICATION: ___ with cough. Ref: {accession}."))
        planted.append(Planted("known", header, [pid, accession, *_digit_runs(pid)] +
                               ([first, last] if first in header else [])))
        text = (header + "\n FINDINGS:\n " + " ".join(sentences) + "\n IMPRESSION: ___ as above.\n"
                + "".join(f" {line}\n" for line in footer))
        reports.append(PlantedReport(text, known, planted, medical))
    return reports


def _present(needle: str, text: str) -> bool:
    if re.fullmatch(r"[A-Za-z'’-]+", needle):   # a name part: as a whole word
        return re.search(rf"(?<![A-Za-z]){re.escape(needle)}(?![A-Za-z])", text) is not None
    if needle.isdigit():                         # a digit run: not inside a longer number either
        return re.search(rf"(?<!\d){needle}(?!\d)", text) is not None
    return needle in text


def measure(reports: list[PlantedReport], scrub: Callable[[PlantedReport], str]) -> dict:
    """Recall per kind (share of planted identifiers with nothing left) and medical over-removal."""
    found, total, leaks = Counter(), Counter(), []
    med_total, med_lost, lost = 0, 0, Counter()
    for r in reports:
        out = scrub(r)
        for p in r.planted:
            total[p.kind] += 1
            left = [x for x in p.must_not_survive if _present(x, out)]
            if left:
                leaks.append((p.kind, p.surface, left, out))
            else:
                found[p.kind] += 1
        for token in r.medical:
            med_total += 1
            if token not in out:
                med_lost += 1
                lost[token] += 1
    words = [w for line in CLEAN_SENTENCES for w in line.split()]
    clean_out = " ".join(scrub(PlantedReport(line, [])) for line in CLEAN_SENTENCES).split()
    words_lost = sum((Counter(words) - Counter(clean_out)).values())
    return {"recall": {k: found[k] / total[k] for k in sorted(total)},
            "clean_words": len(words), "clean_words_removed": words_lost,
            "identifiers": sum(total.values()), "survived": sum(total.values()) - sum(found.values()),
            "medical_tokens": med_total, "medical_removed": med_lost,
            "over_removal": med_lost / max(med_total, 1), "leaks": leaks, "lost_tokens": lost}


def main() -> None:
    from data_adapters.deid import scrub_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    reports = generate(args.reports, args.seed)
    for label, shift in (("no date shift", None), ("date shift +17 days", lambda d: d + dt.timedelta(days=17))):
        m = measure(reports, lambda r: scrub_text(r.text, r.identifiers, shift))
        print(f"{label}: {m['identifiers']} planted identifiers, {m['survived']} survived; "
              f"{m['medical_removed']} of {m['medical_tokens']} medical tokens removed "
              f"({100 * m['over_removal']:.2f}%)")
        print(f"  PHI-free sentences: {m['clean_words_removed']} of {m['clean_words']} words changed")
        print("  recall by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in m["recall"].items()))
        for kind, surface, left, _ in m["leaks"][:10]:
            print(f"  LEAK {kind}: {surface!r} left {left}")
        if m["lost_tokens"]:
            print("  medical tokens removed: " + ", ".join(f"{t} x{n}" for t, n in m["lost_tokens"].most_common(8)))


if __name__ == "__main__":
    main()
