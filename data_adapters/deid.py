"""De-identification applied before anything is written to a manifest or a cache.

- Patient identifiers become keyed pseudonyms: HMAC-SHA256(site secret, source id).
  The same patient gets the same pseudonym at a site for as long as the site keeps
  its secret; without the secret the mapping cannot be recomputed or reversed.
- Dates can be shifted per patient by a keyed offset (same offset for all of a
  patient's exams, so intervals between visits are kept exactly).
- DICOM attributes of the PS3.15 Annex E basic profile are never copied: adapters
  read only the attributes in ``ALLOWED_ATTRIBUTES`` (none of which is in the profile).
- Report text goes through ``scrub_text`` (``phi_text.py``): the identifiers the adapter
  knows plus anything shaped like PHI (names near cues, dates, times, phone numbers,
  e-mails, record numbers, addresses, ages over 89) become ``___``, the placeholder
  MIMIC-CXR uses; with a date shift, full dates in the text move by the patient's offset.
- ``ensure_outside`` refuses an output folder inside the source archive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from data_adapters.private_files import write_owner_only

from .phi_text import PLACEHOLDER, scrub_text  # noqa: F401  (PLACEHOLDER: the adapters' one placeholder)

log = logging.getLogger(__name__)

# PS3.15 Annex E basic application level confidentiality profile: attributes that
# identify the patient, the visit or the institution (the ones found in image and
# SR headers; the full profile lists more, all of which are outside ALLOWED_ATTRIBUTES).
BASIC_PROFILE_ATTRIBUTES: frozenset[str] = frozenset({
    "AccessionNumber", "AcquisitionDate", "AcquisitionDateTime", "AcquisitionTime", "AdditionalPatientHistory",
    "AdmittingDiagnosesDescription", "Allergies", "AuthorObserverSequence", "BranchOfService",
    "ContentCreatorName", "ContentDate", "ContentTime", "CountryOfResidence", "CurrentPatientLocation",
    "DerivationDescription", "DeviceSerialNumber", "EthnicGroup", "FrameOfReferenceUID", "ImageComments",
    "InstanceCreationDate", "InstanceCreatorUID", "InstitutionAddress", "InstitutionName",
    "InstitutionalDepartmentName", "IssuerOfPatientID", "MedicalRecordLocator", "MilitaryRank",
    "NameOfPhysiciansReadingStudy", "Occupation", "OperatorsName", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientAddress", "PatientAge", "PatientBirthDate", "PatientBirthName",
    "PatientBirthTime", "PatientComments", "PatientID", "PatientMotherBirthName", "PatientName",
    "PatientReligiousPreference", "PatientSex", "PatientSize", "PatientTelephoneNumbers", "PatientWeight",
    "PerformedProcedureStepDescription", "PerformedProcedureStepID", "PerformingPhysicianName",
    "PersonName", "PhysiciansOfRecord", "ReferencedSOPInstanceUID", "ReferringPhysicianAddress",
    "ReferringPhysicianName", "ReferringPhysicianTelephoneNumbers", "RequestingPhysician",
    "ResponsiblePerson", "SeriesDate", "SeriesInstanceUID", "SOPInstanceUID", "StationName", "StudyDate",
    "StudyDescription", "StudyID", "StudyInstanceUID", "StudyTime", "VerifyingObserverName",
})
# Attributes an adapter may read from a DICOM header. Identifying ones among them (ID,
# sex, age, dates, UIDs) are read only to be pseudonymised, shifted or turned into
# features, and are never written as they are.
ALLOWED_ATTRIBUTES: frozenset[str] = frozenset({
    "Modality", "ViewPosition", "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept",
    "WindowCenter", "WindowWidth", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
    "SliceThickness", "Rows", "Columns", "BitsAllocated", "SOPClassUID",
    "BurnedInAnnotation", "RecognizableVisualFeatures", "ImageType",  # read to deny burned-in text
})


@dataclass(frozen=True)
class Pseudonymizer:
    """Keyed pseudonyms and date shifts for one site."""

    secret: bytes
    max_date_shift_days: int = 0   # 0: dates kept; N: shift each patient by a keyed offset in [-N, N], never 0

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    def patient(self, source_id: str) -> str:
        return "P" + self._digest("patient", source_id.strip()).hex()[:16]

    def study(self, source_id: str) -> str:
        return "S" + self._digest("study", source_id.strip()).hex()[:16]

    def shift(self, source_patient_id: str, date: dt.date) -> dt.date:
        if not self.max_date_shift_days:
            return date
        # Never 0: a zero offset would leave one patient in 2N+1 with their real dates.
        n = self.max_date_shift_days
        draw = int.from_bytes(self._digest("date", source_patient_id.strip())[:8], "big") % (2 * n)
        offset = draw - n if draw < n else draw - n + 1   # [-n, -1] or [1, n]
        return date + dt.timedelta(days=offset)

    def scrub(self, text: str, source_patient_id: str, identifiers: Iterable[str] = ()) -> str:
        """Report text without PHI; its dates moved by the patient's offset (removed when no shift is set)."""
        shift = (lambda date: self.shift(source_patient_id, date)) if self.max_date_shift_days else None
        return scrub_text(text, (source_patient_id, *identifiers), shift)


def load_or_create_secret(path: str | Path, out: str | Path | None = None) -> bytes:
    """The site secret: read it, or create it (32 random bytes, owner-only) on first use.

    Refused (before any work): a secret inside the output folder `out` (it would travel with the
    data), one other users can read (anyone holding it can recompute the pseudonyms), a folder
    or a file that cannot be read or is not hex."""
    path = Path(path)
    if out is not None and Path(out).resolve() in path.resolve().parents:
        raise ValueError(f"--secret {path}: the site secret is inside the output folder {out}; keep it outside "
                         "the data (it would be copied with the manifests)")
    if path.exists() and not path.is_file():
        raise ValueError(f"--secret {path}: not a file (a folder or a device); give the path of the secret file")
    if path.is_file():
        mode = path.stat().st_mode & 0o777
        if os.name == "posix" and mode & 0o077:
            raise ValueError(f"--secret {path}: readable by other users (mode {mode:o}); anyone with it can "
                             f"recompute the pseudonyms: run `chmod 600 {path}`")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--secret {path}: cannot read the site secret: {e}") from None
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError:
            raise ValueError(f"--secret {path}: not a site secret (want hex digits)") from None
        if len(secret) < 16:
            raise ValueError(f"{path}: site secret too short (want at least 16 bytes as hex)")
        return secret
    secret = secrets.token_bytes(32)
    write_owner_only(path, (secret.hex() + "\n").encode(), exclusive=True)
    log.info("created a new site secret in %s: keep it to get the same pseudonyms next time", path)
    return secret


def ensure_outside(source: str | Path, out: str | Path) -> None:
    """Refuse to write into the source archive (or to write the archive's parent)."""
    src, dst = Path(source).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        raise ValueError(f"refusing to write into the source archive: {dst} is inside {src}")
    if dst in src.parents:
        raise ValueError(f"refusing to write to {dst}: it contains the source archive {src}")
