"""The CheXpert labeler's mention and unmention phrase lists, as data.

Source: github.com/stanfordmlgroup/chexpert-labeler (commit 44ddeb3),
phrases/mention/*.txt and phrases/unmention/*.txt, copied verbatim (MIT
License, Copyright (c) 2018 Stanford Machine Learning Group). A leading or
trailing "_" in a phrase is a word boundary there, as in that labeler
(which replaces "_" by a space). Phrases match as substrings of the
lowercased sentence ("atelecta" matches "atelectatic").

EXTRA_* lists are ours, not CheXpert's: devices and findings that real
reports name and the published lists miss (surgical clips, sternotomy wires,
stents, leads, valve prostheses; "mediastinal widening"; pleural plaques),
and unmentions for phrases that contain a mention word without naming the
finding ("plate-like atelectasis", "tuberculosis", "Kerley B lines",
"granulomatous infection").
"""

from __future__ import annotations

MENTIONS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelecta", "collapse"),
    "Cardiomegaly": ("cardiomegaly", "the heart", "heart size", "cardiac enlargement", "cardiac size",
                     "cardiac shadow", "cardiac contour", "cardiac silhouette", "enlarged heart"),
    "Consolidation": ("consolidat",),
    "Edema": ("edema", "heart failure", "chf", "vascular congestion", "pulmonary congestion", "indistinctness",
              "vascular prominence"),
    "Enlarged Cardiomediastinum": ("_mediastinum", "cardiomediastinum", "contour", "mediastinal configuration",
                                   "mediastinal silhouette", "pericardial silhouette",
                                   "cardiac silhouette and vascularity"),
    "Fracture": ("fracture",),
    "Lung Lesion": ("mass", "nodular density", "nodular densities", "nodular opacity", "nodular opacities",
                    "nodular opacification", "nodule", "lump", "cavitary lesion", "carcinoma", "neoplasm", "tumor"),
    "Lung Opacity": ("opaci", "decreased translucency", "increased density", "airspace disease", "air-space disease",
                     "air space disease", "infiltrate", "infiltration", "interstitial marking", "interstitial pattern",
                     "interstitial lung", "reticular pattern", "reticular marking", "reticulation",
                     "parenchymal scarring", "peribronchial thickening", "wall thickening", "scar"),
    "Pleural Effusion": ("pleural fluid", "effusion"),
    "Pleural Other": ("pleural thickening", "fibrosis", "fibrothorax", "pleural scar", "pleural parenchymal scar",
                      "pleuro-parenchymal scar", "pleuro-pericardial scar"),
    "Pneumonia": ("pneumonia", "infection", "infectious process", "infectious"),
    "Pneumothorax": ("pneumothorax", "pneumothoraces"),
    "Support Devices": ("pacer", "_line_", "lines", "picc", "tube", "valve", "catheter", "pacemaker", "hardware",
                        "arthroplast", "marker", "icd", "defib", "device", "drain_", "plate", "screw", "cannula",
                        "apparatus", "coil", "support", "equipment", "mediport"),
    # Findings outside the 13 that make a report abnormal (phrases/mention/no_finding.txt).
    "No Finding": ("emphysema", "blunt", "density", "elevation", "eventration", "scoliosis", "degenera", "calcifi",
                   "hyperinflation", "bronchospasm", "asthma", "hernia", "copd", "interstitial markings", "plaque",
                   "osteophytosis", "aortic disease", "bronchiolitis", "airways disease", "thickening", "cephalization",
                   "aspiration", "bullae", "hyperinflat", "contusion", "atherosclero", "osteopenia", "metastasis",
                   "granuloma", "pneumomediastinum", "pneumoperitoneum", "osteodystrophy", "cuffing",
                   "irregular lucency", "inflam", "fissure", "hypertension", "prominen", "kyphosis", "defib", "bullet",
                   "reticula", "thoracentesis", "bronchitis", "volume loss", "deformity", "hemorrhage", "hematoma",
                   "radiopaque", "aerophagia", "arthropathy", "tracheostomy"),
}

UNMENTIONS: dict[str, tuple[str, ...]] = {
    "Lung Lesion": ("calcified nodul", "massive", "massengale"),
    "Lung Opacity": ("pleural scar",),
    "Pleural Effusion": ("pericardial effusion",),
}

# Cardiomegaly / Enlarged Cardiomediastinum: mentions placed "over the heart" etc. are not about
# the heart (chexpert-labeler stages/extract.py, add_unmention_phrases).
_POSITIONAL = [a + b for a in ("over the", "overly the", "in the") for b in ("", " superior", " left", " right")]
UNMENTIONS["Cardiomegaly"] = tuple(f"{p} {m.replace('the ', '')}" for p in _POSITIONAL
                                   for m in MENTIONS["Cardiomegaly"] if m not in ("cardiomegaly", "cardiac enlargement"))
UNMENTIONS["Enlarged Cardiomediastinum"] = tuple(f"{p} {m}" for p in _POSITIONAL
                                                 for m in MENTIONS["Enlarged Cardiomediastinum"])

# Ours (see the module docstring).
EXTRA_MENTIONS: dict[str, tuple[str, ...]] = {
    "Support Devices": ("clip", "_wire", "sternotomy", "sternal suture", "_stent", "prosthe", "_lead_", "_leads_",
                        "port-a-cath", "portacath", "_port_", "_graft", "_ett_", "_ngt_", "_ogt_", "_cvc_",
                        "dobhoff", "swan-ganz", "_drain", "tracheostomy", "assist device", "lvad", "_aicd_",
                        "cabg", "valve replacement", "annuloplasty", "staple", "cerclage", "fusion hardware",
                        "suture", "stimulator", "occluder", "bone anchor", "_balloon", "distal tip",
                        "tip in the", "tip at the", "tip project", "tip overl", "tip terminat", "monitor lead"),
    "Enlarged Cardiomediastinum": ("mediastinal widening", "widened mediastin", "widening of the mediastin",
                                   "cardiomediastinal silhouette is enlarged", "enlarged cardiomediastin"),
    "Lung Lesion": ("lung lesion", "pulmonary lesion", "nodular lesion", "spiculated lesion", "metastases"),
    "Lung Opacity": ("haziness", "interstitial prominence", "fibrotic", "pulmonary fibrosis", "interstitial fibrosis"),
    "Pneumonia": ("pneumonitis",),
    "Pleural Other": ("pleural plaque", "pleural calcification"),
    "Fracture": ("compression deformit", "wedge deformit", "wedge compression", "wedge xxxx deformit"),
    "No Finding": ("hyperexpan", "bronchiectasis", "tortuous"),
}
EXTRA_UNMENTIONS: dict[str, tuple[str, ...]] = {
    "Support Devices": ("plate-like", "plate like", "platelike", "plate atelect", "endplate", "end plate",
                        "tubercul", "kerley b line", "kerley line", "septal line", "midline", "pleural line", "nipple marker",
                        "supportive", "valvular", "valve calcification", "lead to", "leads to", "breast prosthe"),
    "Pneumonia": ("granulomatous infect", "postinfectious", "post-infectious"),
    "Lung Lesion": ("calcified granulomatous nodul", "mass effect"),
    "Edema": ("soft tissue edema", "subcutaneous edema"),
    "Lung Opacity": ("pleural parenchymal scar", "pleuroparenchymal scar"),
    "Pleural Other": ("pulmonary fibrosis", "interstitial fibrosis", "lung fibrosis", "diffuse fibrosis"),
    "Enlarged Cardiomediastinum": ("left hilar contour", "right hilar contour"),
}
