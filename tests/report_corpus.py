"""A hand-written, hand-labelled corpus of real-style chest X-ray findings.

Written for this project (not copied from MIMIC-CXR, IU X-ray or any other
report collection): sentences in the style of MIMIC-CXR ("___" for removed
names and dates) and of the IU X-ray / OpenI reports ("XXXX"), with the
things real text has and synthetic text lacks: slashes ("and/or"),
possessives, numbers with units, decimals, abbreviations ("d/w Dr. ___"),
parentheses, vertebral levels, times and percentages.

Each entry is (report, labels): labels name every observation the report
states, as a radiologist reading it would index it: 1 present, 0 absent,
-1 uncertain (differential diagnosis, "cannot exclude", "may represent").
Observations left out are not mentioned. "No Finding" follows CheXpert:
1 when nothing but support devices is present or uncertain (granulomas,
emphysema, scoliosis and the like count as findings).
"""

from __future__ import annotations

_K = {
    "EC": "Enlarged Cardiomediastinum", "CM": "Cardiomegaly", "LO": "Lung Opacity", "LL": "Lung Lesion",
    "ED": "Edema", "CO": "Consolidation", "PN": "Pneumonia", "AT": "Atelectasis", "PX": "Pneumothorax",
    "PE": "Pleural Effusion", "PO": "Pleural Other", "FX": "Fracture", "SD": "Support Devices", "NF": "No Finding",
}


def _r(text: str, **labels: int) -> tuple[str, dict[str, int]]:
    return text, {_K[k]: v for k, v in labels.items()}


REPORTS: list[tuple[str, dict[str, int]]] = [
    # --- normal studies
    _r("The lungs are clear. The cardiomediastinal silhouette is within normal limits. No acute osseous "
       "abnormality. No pleural effusion or pneumothorax.", EC=0, PE=0, PX=0, NF=1),
    _r("Heart size is normal. Lungs are clear without focal consolidation, pleural effusion, or pneumothorax.",
       CM=0, CO=0, PE=0, PX=0, NF=1),
    _r("The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.", CM=0, EC=0, NF=1),
    _r("No acute cardiopulmonary process.", NF=1),
    _r("PA and lateral views of the chest provided. There is no focal consolidation, effusion, or "
       "pneumothorax. The cardiomediastinal silhouette is normal. Imaged osseous structures are intact. "
       "No free air below the right hemidiaphragm is seen.", CO=0, PE=0, PX=0, EC=0, NF=1),
    _r("The cardiac silhouette and mediastinal contours are within normal limits. There is no "
       "pulmonary edema. No focal airspace opacity.", CM=0, EC=0, ED=0, LO=0, NF=1),
    _r("Lungs are well expanded and clear. Hila are unremarkable. No pleural abnormality. "
       "Heart size is top-normal.", CM=0, NF=1),
    _r("The heart size and pulmonary vascularity appear within normal limits. The lungs are free of focal "
       "airspace disease. No pleural effusion or pneumothorax is seen.", CM=0, LO=0, PE=0, PX=0, NF=1),
    _r("Normal heart size. Clear lungs. No pneumothorax, pleural effusion, or consolidation. "
       "No displaced rib fractures.", CM=0, PX=0, PE=0, CO=0, FX=0, NF=1),
    _r("Heart size within normal limits. No focal alveolar consolidation, no definite pleural effusion "
       "seen. No typical findings of pulmonary edema.", CM=0, CO=0, PE=0, ED=0, NF=1),
    _r("The lungs are clear bilaterally. Specifically, no evidence of focal consolidation, pneumothorax, "
       "or pleural effusion. Cardiomediastinal silhouette is unremarkable. Visualized osseous structures "
       "of the thorax are without acute abnormality.", CO=0, PX=0, PE=0, EC=0, NF=1),
    _r("Cardiomediastinal silhouette and pulmonary vasculature are within normal limits. Lungs are "
       "clear. No pneumothorax or pleural effusion. No acute osseous findings.", EC=0, PX=0, PE=0, NF=1),
    _r("The heart is not enlarged. There is no evidence of pneumonia. There is no pleural effusion.",
       CM=0, PN=0, PE=0, NF=1),
    _r("No evidence of acute disease. Heart size and mediastinal contour are normal. The lungs are "
       "clear. There's no pneumothorax.", CM=0, EC=0, PX=0, NF=1),
    _r("Normal chest x-XXXX. Heart size normal. Lungs clear.", CM=0, NF=1),
    _r("The patient's lungs are clear and there is no effusion. The cardiac and mediastinal contours are "
       "stable and normal.", PE=0, CM=0, EC=0, NF=1),
    _r("No radiographic evidence of pneumonia. Lungs are clear. Heart and mediastinum are within normal "
       "limits.", PN=0, CM=0, EC=0, NF=1),
    _r("The lungs are hyperexpanded but clear. No focal airspace consolidation. Heart size is normal.",
       CO=0, CM=0, NF=0),
    # --- support devices
    _r("Median sternotomy wires and mediastinal clips are intact. The heart size is normal. "
       "Lungs are clear.", SD=1, CM=0, NF=1),
    _r("Postoperative changes of CABG with intact sternotomy wires. Mild cardiomegaly is stable. "
       "No pleural effusion.", SD=1, CM=1, PE=0, NF=0),
    _r("Left-sided dual-chamber pacemaker with leads terminating in the right atrium and right "
       "ventricle. No pneumothorax.", SD=1, PX=0, NF=1),
    _r("A left chest wall ICD is present with a single lead in the right ventricle. Heart size is "
       "mildly enlarged.", SD=1, CM=1, NF=0),
    _r("Prosthetic aortic valve is noted. The heart is moderately enlarged. Small bilateral pleural "
       "effusions.", SD=1, CM=1, PE=1, NF=0),
    _r("Status post mitral valve replacement. Stable cardiomegaly. No edema.", SD=1, CM=1, ED=0, NF=0),
    _r("Surgical clips are seen in the right upper quadrant. Lungs are clear. No effusion.",
       SD=1, PE=0, NF=1),
    _r("Endotracheal tube terminates 4.5 cm above the carina. Enteric tube courses below the diaphragm "
       "with the tip in the stomach. Right IJ central venous catheter tip in the mid SVC.", SD=1, NF=1),
    _r("The ET tube tip is 3 cm above the carina. An NG tube is seen with its tip in the stomach. "
       "Bibasilar atelectasis.", SD=1, AT=1, NF=0),
    _r("Right PICC line ends in the low SVC. No pneumothorax. Lungs are clear.", SD=1, PX=0, NF=1),
    _r("Dobhoff tube tip is in the distal stomach. No focal consolidation.", SD=1, CO=0, NF=1),
    _r("Right-sided chest tube is in place with no residual pneumothorax. Small right pleural effusion "
       "persists.", SD=1, PX=0, PE=1, NF=0),
    _r("Coronary artery stent is noted. Heart size is normal. No acute process.", SD=1, CM=0, NF=1),
    _r("Cholecystectomy clips. Otherwise unremarkable chest.", SD=1, NF=1),
    _r("Left subclavian port-a-cath with catheter tip in the right atrium. Lungs are clear.", SD=1, NF=1),
    _r("Tracheostomy tube in standard position. Interval removal of the nasogastric tube. "
       "Mild left basilar atelectasis.", SD=1, AT=1, NF=0),
    _r("The endotracheal tube has been removed. No pneumothorax.", SD=0, PX=0, NF=1),
    _r("Spinal fusion hardware is seen in the lower thoracic spine. No acute cardiopulmonary "
       "abnormality.", SD=1, NF=1),
    _r("Aortic valve prosthesis and sternal wires. Left ventricular assist device in place. Moderate "
       "cardiomegaly.", SD=1, CM=1, NF=0),
    _r("Transvenous pacer leads in unchanged position. Heart size is top normal. No effusion.",
       SD=1, CM=0, PE=0, NF=1),
    _r("Endovascular stent graft in the descending aorta. No acute findings.", SD=1, NF=1),
    _r("Swan-Ganz catheter terminates in the right pulmonary artery. Mild pulmonary vascular "
       "congestion.", SD=1, ED=-1, NF=0),
    # --- granulomatous disease, scarring, lung lesions
    _r("Calcified granuloma in the right upper lobe. No focal airspace disease. Heart size normal.",
       LO=0, CM=0, NF=0),
    _r("Calcified right hilar lymph nodes and a calcified granuloma in the left lower lobe are "
       "sequelae of prior granulomatous infection. Lungs otherwise clear.", PN=0, NF=0),
    _r("Stable calcified nodule in the left mid lung, consistent with old granulomatous disease. "
       "No pneumonia.", PN=0, NF=0),
    _r("Findings consistent with prior granulomatous disease. No acute cardiopulmonary abnormality.",
       NF=0),
    _r("Scattered calcified granulomas. Heart size is normal. No pleural effusion.", CM=0, PE=0, NF=0),
    _r("There is a 2.5 cm spiculated mass in the right upper lobe concerning for malignancy. "
       "CT is recommended.", LL=1, NF=0),
    _r("A 9 mm nodular opacity projects over the left lower lobe. Recommend CT for further "
       "evaluation.", LL=1, LO=1, NF=0),
    _r("There is a 1.2 x 1.0 cm pulmonary nodule in the right midlung. No pleural effusion.",
       LL=1, PE=0, NF=0),
    _r("Possible nodule at the right lung base may represent a nipple shadow; repeat with nipple "
       "markers is recommended.", LL=-1, NF=0),
    _r("Left hilar mass with postobstructive collapse of the left upper lobe.", LL=1, AT=1, NF=0),
    _r("Multiple pulmonary metastases are again seen, the largest measuring 3.1 cm in the right "
       "lower lobe.", LL=1, NF=0),
    _r("No suspicious pulmonary nodules or masses. Heart size is normal.", LL=0, CM=0, NF=1),
    _r("Apical scarring bilaterally. No acute process.", LO=1, NF=0),
    _r("Biapical pleural-parenchymal scarring is unchanged. No focal consolidation.", PO=1, CO=0, NF=0),
    # --- differential diagnosis: edema / pneumonia
    _r("Patchy bibasilar opacities may represent atelectasis, though infection cannot be excluded.",
       LO=1, AT=-1, PN=-1, NF=0),
    _r("Increased interstitial markings could reflect mild interstitial edema or atypical infection.",
       LO=1, ED=-1, PN=-1, NF=0),
    _r("Right lower lobe opacity, concerning for pneumonia in the appropriate clinical setting.",
       LO=1, PN=-1, NF=0),
    _r("Left basilar opacity likely reflects atelectasis; pneumonia is less likely.",
       LO=1, AT=-1, PN=-1, NF=0),
    _r("Diffuse bilateral airspace opacities, differential diagnosis includes pulmonary edema, "
       "infection, or hemorrhage.", LO=1, ED=-1, PN=-1, NF=0),
    _r("Findings are concerning for inflammatory/infectious process and/or aspiration.", PN=-1, NF=0),
    _r("Hazy opacity at the right base could be due to aspiration and/or pneumonia.",
       LO=1, PN=-1, NF=0),
    _r("Mild pulmonary vascular congestion without frank edema.", ED=0, NF=0),
    _r("Moderate pulmonary edema with bilateral pleural effusions. Cardiomegaly.", ED=1, PE=1, CM=1, NF=0),
    _r("Interval improvement in pulmonary edema, now mild. Small left pleural effusion.", ED=1, PE=1, NF=0),
    _r("Severe cardiomegaly with pulmonary edema, consistent with CHF.", CM=1, ED=1, NF=0),
    _r("Right lower lobe consolidation consistent with pneumonia.", CO=1, PN=1, NF=0),
    _r("Left lower lobe pneumonia. No effusion.", PN=1, PE=0, NF=0),
    _r("Multifocal pneumonia, worse in the right lower lobe.", PN=1, NF=0),
    _r("No evidence of pneumonia or CHF.", PN=0, ED=0, NF=1),
    _r("There is no radiographic evidence of pulmonary edema. No pneumonia.", ED=0, PN=0, NF=1),
    _r("Opacity in the left lower lobe is suspicious for pneumonia.", LO=1, PN=-1, NF=0),
    _r("Bibasilar opacities, atelectasis versus consolidation.", LO=1, AT=-1, CO=-1, NF=0),
    _r("Mild interstitial prominence may be due to fluid overload or chronic lung disease.",
       ED=-1, NF=0),
    _r("Resolved left lower lobe pneumonia.", PN=0, NF=1),
    _r("The previously seen right upper lobe pneumonia has resolved.", PN=0, NF=1),
    _r("Clinical correlation for pneumonia is recommended. Lungs appear clear.", PN=-1, NF=0),
    _r("Perihilar haziness and Kerley B lines suggest interstitial edema.", LO=1, ED=-1, NF=0),
    _r("Findings d/w Dr. ___ at 10:30 a.m. on ___ by telephone. New right lower lobe consolidation, "
       "compatible with pneumonia.", CO=1, PN=1, NF=0),
    # --- effusions, pneumothorax, atelectasis
    _r("Small left pleural effusion with adjacent atelectasis.", PE=1, AT=1, NF=0),
    _r("Blunting of the right costophrenic angle may reflect a small effusion or pleural thickening.",
       PE=-1, PO=-1, NF=0),
    _r("Moderate right pleural effusion, increased from ___.", PE=1, NF=0),
    _r("Trace bilateral pleural effusions.", PE=1, NF=0),
    _r("No pericardial effusion. Lungs are clear.", NF=1),
    _r("Large left pneumothorax with rightward mediastinal shift.", PX=1, NF=0),
    _r("Tiny right apical pneumothorax, decreased since the prior study.", PX=1, NF=0),
    _r("No pneumothorax after chest tube removal.", PX=0, SD=0, NF=1),
    _r("Linear atelectasis at the left base. Otherwise clear.", AT=1, NF=0),
    _r("Minimal bibasilar atelectasis. No pleural effusion.", AT=1, PE=0, NF=0),
    _r("Right middle lobe collapse.", AT=1, NF=0),
    _r("Plate-like atelectasis in the lingula. Mild cardiomegaly. Small hiatal hernia.",
       AT=1, CM=1, NF=0),
    _r("Loculated right pleural fluid collection.", PE=1, NF=0),
    _r("Left apical pleural thickening is unchanged.", PO=1, NF=0),
    _r("Calcified pleural plaques consistent with prior asbestos exposure.", PO=1, NF=0),
    _r("Streaky opacities at the lung bases likely represent atelectasis.", LO=1, AT=-1, NF=0),
    # --- cardiomegaly / mediastinum
    _r("The cardiac silhouette is enlarged. The aorta is tortuous.", CM=1, NF=0),
    _r("Moderate cardiomegaly. Mediastinal widening.", CM=1, EC=1, NF=0),
    _r("Stable enlarged cardiomediastinal silhouette.", EC=1, NF=0),
    _r("The mediastinum is widened, possibly due to vascular engorgement.", EC=1, NF=0),
    _r("Cardiomediastinal contours are stable.", EC=0, NF=1),
    _r("Borderline heart size.", CM=-1, NF=0),
    _r("The heart size is at the upper limits of normal.", CM=0, NF=1),
    _r("Mild enlargement of the cardiac silhouette is unchanged.", CM=1, NF=0),
    _r("Cardiomegaly is stable. Tortuous and calcified thoracic aorta.", CM=1, NF=0),
    _r("The heart is mildly enlarged. Central pulmonary arteries are prominent.", CM=1, NF=0),
    _r("Enlargement of the cardiac silhouette may reflect a pericardial effusion.", CM=1, NF=0),
    # --- fractures and bones
    _r("Healed left lateral rib fractures. No acute fracture.", FX=1, NF=0),
    _r("Acute displaced fracture of the right 6th rib. No pneumothorax.", FX=1, PX=0, NF=0),
    _r("Compression deformity of T11-T12 is stable. Degenerative changes of the thoracic spine.",
       FX=1, NF=0),
    _r("No acute rib fractures are identified.", FX=0, NF=1),
    _r("Old healed right clavicle fracture.", FX=1, NF=0),
    _r("Degenerative changes at C5-6. Lungs are clear.", NF=0),
    _r("Thoracolumbar scoliosis. No acute cardiopulmonary disease.", NF=0),
    # --- opacities and consolidation
    _r("Patchy opacity in the right lower lobe.", LO=1, NF=0),
    _r("Interval worsening of bilateral airspace opacities.", LO=1, NF=0),
    _r("Left retrocardiac opacity, atelectasis or consolidation.", LO=1, AT=-1, CO=-1, NF=0),
    _r("New left upper lobe consolidation.", CO=1, NF=0),
    _r("Dense consolidation of the right lower lobe with air bronchograms.", CO=1, NF=0),
    _r("No focal consolidation to suggest pneumonia.", CO=0, PN=0, NF=1),
    _r("Ill-defined opacity in the right mid lung may represent an early pneumonia.",
       LO=1, PN=-1, NF=0),
    _r("Increased reticular markings in both lungs, likely chronic.", LO=1, NF=0),
    _r("Mild peribronchial thickening.", LO=1, NF=0),
    _r("Emphysema. No acute process.", NF=0),
    _r("Hyperinflated lungs consistent with COPD. No infiltrate.", LO=0, NF=0),
    # --- comparisons, mixtures, real-text noise
    _r("As compared to the previous radiograph of ___, there is no relevant change. Mild cardiomegaly "
       "persists. No pleural effusion, no pulmonary edema.", CM=1, PE=0, ED=0, NF=0),
    _r("In comparison with the study of ___, the endotracheal tube has been pulled back and now lies "
       "approximately 5 cm above the carina. Continued opacification at the left base with silhouetting "
       "of the hemidiaphragm, consistent with volume loss in the left lower lobe and pleural fluid.",
       SD=1, LO=1, AT=1, PE=1, NF=0),
    _r("Compared to ___, there is interval decrease in the size of the right pneumothorax (now ~5%). "
       "Right chest tube (pigtail) unchanged.", PX=1, SD=1, NF=0),
    _r("Since ___, lung volumes have decreased. There is new mild pulmonary edema and there's a "
       "small right effusion. Heart size is unchanged.", ED=1, PE=1, CM=-1, NF=0),
    _r("Lung volumes are low. Bibasilar opacities likely reflect atelectasis; superimposed infection "
       "can't be excluded in the right clinical setting.", LO=1, AT=-1, PN=-1, NF=0),
    _r("Heart size is mildly enlarged (C/T ratio 0.55). Left-sided pleural effusion, moderate in size, "
       "with adjacent opacity (atelectasis vs. pneumonia).", CM=1, PE=1, LO=1, AT=-1, PN=-1, NF=0),
    _r("There is a nasogastric tube (with side port at the GE junction). No new focal opacity. "
       "Unchanged small left effusion.", SD=1, LO=0, PE=1, NF=0),
    _r("Right IJ line tip at the cavo-atrial junction/right atrium. Subsegmental atelectasis at the "
       "right base; otherwise, no consolidation.", SD=1, AT=1, CO=0, NF=0),
    _r("The tip of the left-sided PICC projects over the SVC at the level of T5-6 (approx. 2.5 cm "
       "below the carina). No pneumothorax.", SD=1, PX=0, NF=1),
    _r("Interval resolution of the left pleural effusion. Residual left basilar atelectasis.",
       PE=0, AT=1, NF=0),
    _r("No new consolidation. Unchanged right upper lobe nodule, measuring 8 mm.", CO=0, LL=1, NF=0),
    _r("XXXX sternotomy. Heart size within normal limits. No pneumothorax or pleural effusion.",
       SD=1, CM=0, PX=0, PE=0, NF=1),
    _r("Stable appearance of the chest with intact median sternotomy wires and cardiac valve "
       "replacement. No focal airspace disease.", SD=1, LO=0, NF=1),
    _r("There is increased opacity within the right upper lobe with possible mass and associated area "
       "of atelectasis or focal consolidation.", LO=1, LL=-1, AT=-1, CO=-1, NF=0),
    _r("Cardiac pacemaker in place. The heart is enlarged. Pulmonary vascular congestion and mild "
       "interstitial edema.", SD=1, CM=1, ED=1, NF=0),
    _r("Bilateral lower lobe bronchiectasis with chronic scarring. No effusion or pneumothorax.",
       LO=1, PE=0, PX=0, NF=0),
]

# Sentences that exercise the PTB tokenizer's rules on report text (slashes, clitics, units,
# abbreviations, placeholders, brackets, levels, times, percentages, quotes, list numbering).
TOKENIZER_SENTENCES: list[str] = [
    "Findings are concerning for inflammatory/infectious process and/or aspiration.",
    "The patient's heart is enlarged; there's no effusion. Can't exclude a small pneumothorax.",
    "A 2.5 cm nodule (previously 2.1cm) in the RUL, measuring 2.5 x 1.3 cm; a 3-mm nodule at the left base.",
    "Findings d/w Dr. ___ at 10:30 a.m. on ___ by telephone, 2 minutes after discovery.",
    "Enteric tube (in the stomach) at the C5-6 level; T11-T12 compression, 50% height loss, ~5 mm retrolisthesis.",
    "1. No acute cardiopulmonary process. 2. Stable cardiomegaly. 3) Small left effusion.",
    "IMPRESSION: Interval increase in the right-sided effusion, now moderate-to-large.",
    "Right IJ line tip at the cavo-atrial junction/right atrium; s/p CABG w/ sternotomy wires.",
    "ETT 4.5cm above the carina; OGT/NGT tip not visualized. R/o PNA, c/w atelectasis.",
    "The lungs are clear.There is no pneumothorax.Dr. ___ was notified.",
    "Compared to ___ at 08:15, the PICC (left arm) now ends in the mid-SVC, i.e., 2 cm higher.",
    "\"Opacity\" in the RLL vs. atelectasis; e.g. a.m. film recommended. Type A. The aorta is tortuous.",
    "Post-op changes: L4/5 fusion hardware, 2 views (PA/lateral), 12/05/2013 comparison.",
    "A ___-year-old man with SOB x3 days. ___M. XXXX XXXX. Heart size is upper limits of normal.",
    "The patient's ICD leads are intact -- no fracture. There's a 1,000 mL pleural drain output.",
    "Mild pulmonary vascular congestion ... probably fluid overload. Doesn't appear worse; won't change management.",
    "Subsegmental atelectasis at the left base [unchanged] and {stable} nodules #3, #4 (see above).",
    "Left PICC ends ~3.5 cm below the carina, approx. 1.5-2.0 cm above the cavoatrial junction.",
    "Right lung: 2 1/2 cm mass; left lung: 3/4 cm nodule. SpO2 98% on 2L O2. Temp 38.5 C.",
    "Lines/tubes: ET tube, R IJ CVC, L subclavian Port-A-Cath. Sternal wires #1-#6 intact.",
    "No. 2 rib fracture, old. Fig. 3 shows the No effusion sign. St. ___ hospital; Mass. General.",
    "The heart size is normal. The patient's ET tube has been removed. Pt. is s/p MVR.",
    "Cardiomegaly (CTR > 0.6) and bibasilar opacities <2 cm; findings +/- early edema = CHF?",
    "Bilateral pleural effusions, L>R. CHF vs. volume overload! Reassess after diuresis.",
]

# Written after the labeler was tuned on REPORTS and scored once, unchanged: a check on generality.
HELD_OUT: list[tuple[str, dict[str, int]]] = [
    _r("Frontal and lateral views of the chest. The lungs are clear without consolidation or edema. "
       "No pleural effusion. Heart size normal.", CO=0, ED=0, PE=0, CM=0, NF=1),
    _r("Left chest wall dual lead pacing device. Mild cardiomegaly. Small left pleural effusion with "
       "adjacent atelectasis.", SD=1, CM=1, PE=1, AT=1, NF=0),
    _r("Surgical clips project over the left axilla. No acute cardiopulmonary process.", SD=1, NF=1),
    _r("Lower lung volumes with bibasilar atelectasis. Pneumonia is not excluded.", AT=1, PN=-1, NF=0),
    _r("Diffuse interstitial opacities, which may represent edema or atypical infection.",
       LO=1, ED=-1, PN=-1, NF=0),
    _r("Calcified mediastinal and hilar lymph nodes. Calcified granuloma in the left lung apex. "
       "No focal airspace consolidation.", CO=0, NF=0),
    _r("Right upper lobe nodular opacity measuring 1.5 cm, new since ___. Recommend chest CT.",
       LL=1, LO=1, NF=0),
    _r("The endotracheal tube tip is 2 cm above the carina; recommend withdrawal by 2 cm. Orogastric "
       "tube is in the stomach. Right subclavian line ends in the SVC.", SD=1, NF=1),
    _r("Small right apical pneumothorax following line placement.", PX=1, SD=1, NF=0),
    _r("Moderate to severe pulmonary edema, worse than on ___. Bilateral effusions.", ED=1, PE=1, NF=0),
    _r("Heart size is enlarged. There is mild vascular congestion. No frank pulmonary edema.",
       CM=1, ED=0, NF=0),
    _r("No focal consolidation, pleural effusion or pneumothorax. The cardiomediastinal silhouette is "
       "unchanged. Median sternotomy wires are again noted.", CO=0, PE=0, PX=0, EC=0, SD=1, NF=1),
    _r("Patchy right basilar consolidation, likely pneumonia in the appropriate clinical setting.",
       CO=1, PN=-1, NF=0),
    _r("Minimally displaced fracture of the left 8th posterior rib. No pneumothorax.", FX=1, PX=0, NF=0),
    _r("Stable postsurgical changes of the left hemithorax with pleural thickening.", PO=1, NF=0),
    _r("There has been interval removal of the right chest tube. No residual pneumothorax.",
       SD=0, PX=0, NF=1),
    _r("Low lung volumes. Crowding of the bronchovascular markings without focal opacity.", LO=0, NF=1),
    _r("Moderate right pleural effusion and right lower lobe collapse.", PE=1, AT=1, NF=0),
    _r("A 3.2 x 2.8 cm mass in the left hilum is concerning for neoplasm.", LL=1, NF=0),
    _r("Mild cardiomegaly with prominent pulmonary vasculature; no overt edema.", CM=1, ED=0, NF=0),
    _r("Biventricular ICD in unchanged position. The heart remains enlarged. No new opacity.",
       SD=1, CM=1, LO=0, NF=0),
    _r("Lungs are hyperinflated with flattening of the diaphragms, compatible with emphysema. No pneumonia.",
       PN=0, NF=0),
    _r("Nasogastric tube tip in the proximal stomach; side port near the GE junction. Right PICC "
       "terminates at the cavoatrial junction.", SD=1, NF=1),
    _r("Possible small left pleural effusion versus pleural thickening.", PE=-1, PO=-1, NF=0),
    _r("Worsening multifocal airspace opacities consistent with ARDS or pneumonia.", LO=1, PN=-1, NF=0),
    _r("Aortic and mitral valve replacements. Cardiomegaly is stable. Mild pulmonary edema.",
       SD=1, CM=1, ED=1, NF=0),
    _r("No acute fracture. Old healed right rib fractures.", FX=1, NF=0),
    _r("Right lower lobe pneumonia has improved. Residual opacity remains.", PN=1, LO=1, NF=0),
    _r("Coronary stents and CABG clips. Lungs clear. No effusion.", SD=1, PE=0, NF=1),
    _r("Left basilar opacity could reflect atelectasis, aspiration, or pneumonia.", LO=1, AT=-1, PN=-1, NF=0),
]
