"""Issue 13, manifests: one bad byte, one oversized field or one image outside the folder spoils its row
only, named by file and line; skips are logged as a count and the first few."""

from __future__ import annotations

import csv
import dataclasses
import logging
import shutil

from data_adapters.records import SkippedRow, log_skips, read_manifest


def _site(federation_manifest, out):
    shutil.copytree(federation_manifest.parent, out)
    return out / "manifest.csv"


def test_bad_bytes_and_an_oversized_field_skip_their_rows_only(small_federation, tmp_path):
    manifest = _site(small_federation[0], tmp_path / "site")
    lines = manifest.read_bytes().split(b"\n")
    total = len(read_manifest(manifest).records)
    lines[2] = lines[2].replace(b"site", b"s\xffite", 1)                    # line 3: not UTF-8
    big = "x" * (csv.field_size_limit() + 10)
    lines[4] = lines[4].split(b",", 1)[0] + b',"' + big.encode() + b'",' + lines[4].split(b",", 1)[1]  # line 5
    manifest.write_bytes(b"\n".join(lines))
    m = read_manifest(manifest)
    reasons = {s.line: s.reason for s in m.skipped}
    assert "bytes that are not UTF-8 in column(s) site_id" in reasons[3]
    assert "unparsable CSV row" in reasons[5] and "field larger than field limit" in reasons[5]
    assert len(m.records) == total - 2 and all(str(manifest) in str(s) for s in m.skipped)


def test_image_paths_outside_the_manifests_folder_are_skipped(small_federation, tmp_path):
    manifest = _site(small_federation[0], tmp_path / "site")
    other = small_federation[1].parent / "images"
    outside = next(other.iterdir())
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["image_paths"] = "../../../../etc/passwd"
    rows[1]["image_paths"] = str(outside)
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    reasons = {s.line: s.reason for s in read_manifest(manifest).skipped}
    assert set(reasons) == {2, 3}
    assert all("is outside the manifest's folder" in r for r in reasons.values())


def test_skips_are_logged_as_a_count_and_the_first_few(tmp_path, caplog):
    skips = [SkippedRow(tmp_path / "m.csv", i, f"reason {i}") for i in range(2, 12)]
    with caplog.at_level(logging.DEBUG):
        log_skips(logging.getLogger("t"), tmp_path / "m.csv", skips)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 10 row(s) (first 5" in warnings[0] and "m.csv:6: reason 6" in warnings[0]
    assert "m.csv:7" not in warnings[0]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 5


def test_a_label_value_out_of_range_skips_its_row(small_federation, tmp_path):
    """Labels are kept as int8 severities; a value that would not fit is a named row error, not a wrap."""
    manifest = _site(small_federation[0], tmp_path / "site")
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["labels"] = '{"effusion": 300}'
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    m = read_manifest(manifest)
    assert [s.line for s in m.skipped] == [2] and "out of range" in m.skipped[0].reason
    assert len(m.records) == len(rows) - 1


@dataclasses.dataclass
class _Role:
    port: int = 0


def test_a_byte_order_mark_is_read_as_utf8_in_manifests_tables_and_toml(small_federation, tmp_path):
    """Issue 21: Excel's "CSV UTF-8" (and Notepad) put a byte-order mark before the first column name."""
    from data_adapters.prepared import read_table
    from fedtar.config import load_config, load_dataclass_toml
    from fedtar.operations.output_folder import claim_output_file

    manifest = _site(small_federation[0], tmp_path / "site")
    plain = read_manifest(manifest)
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())
    m = read_manifest(manifest)
    assert m.skipped == [] and [r.patient_id for r in m.records] == [r.patient_id for r in plain.records]
    assert m.records[0].site_id == plain.records[0].site_id

    table = tmp_path / "patients.csv"
    table.write_bytes(b"\xef\xbb\xbfsubject_id,gender\n1,F\n")
    assert read_table(table, ("subject_id",)) == [(2, {"subject_id": "1", "gender": "F"})]

    config = tmp_path / "run.toml"
    config.write_bytes(b"\xef\xbb\xbf[model]\nhidden_size = 48\n")
    assert load_config(config).model.hidden_size == 48
    role = tmp_path / "node.toml"
    role.write_bytes(b"\xef\xbb\xbf[supernode]\nport = 9094\n")
    assert load_dataclass_toml(role, "supernode", _Role).port == 9094

    from fedtar.scoring.metrics.iu_reports import load_labels
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbfreport_id,Edema\n3,1\n")
    assert load_labels(labels) == (("Edema",), {3: {"Edema": 1}})

    out = tmp_path / "generated_reports.csv"
    out.write_bytes(b"\xef\xbb\xbfheader,line\n1,2\n")  # fedtar's own output, saved again by Excel
    with claim_output_file(out, "evaluate", "header,line") as claimed:
        assert claimed == out


def test_a_repeated_exam_row_is_skipped_naming_its_line_and_the_first_is_kept(small_federation, tmp_path):
    manifest = _site(small_federation[0], tmp_path / "site")
    lines = manifest.read_bytes().rstrip(b"\n").split(b"\n")
    total = len(lines) - 1
    lines.append(lines[3])                                  # line 4 again, as line total + 2
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    m = read_manifest(manifest)
    assert [(s.line, s.reason) for s in m.skipped] == [
        (total + 2, "duplicate of line 4 (same site, patient, study date and images)")]
    assert f"{manifest}:{total + 2}: duplicate of line 4" in str(m.skipped[0])
    assert len(m.records) == total and sorted(r.line for r in m.records) == list(range(2, total + 2))

    # Same exam, different report text: still the same exam (site, patient, date and images).
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))[:total]
    rows.append(dict(rows[0], findings="A different report for the same images.", visit_index="9"))
    rows.append(dict(rows[0], image_paths=rows[1]["image_paths"]))   # other images: another exam
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    m = read_manifest(manifest)
    assert [s.line for s in m.skipped] == [total + 2] and "duplicate of line 2" in m.skipped[0].reason
    assert len(m.records) == total + 1
    kept = next(r for r in m.records if r.line == 2)
    assert kept.findings == rows[0]["findings"]
