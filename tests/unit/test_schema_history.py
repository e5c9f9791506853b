"""Schema history: every released version is recorded, every change is FULL_TRANSITIVE
compatible, and the registry-less codec reads a record written by any released version."""

import io
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import fastavro
import fastavro.utils
import pytest

from geoflux.errors import PermanentError, ValidationError
from schemas.avro_dir import AVRO_DIR, AvroDir
from schemas.codec import AvroCodec, LocalSchemaRegistry, stable_schema_id
from schemas.history import (
    HOW_TO_RECORD,
    history_problems,
    main,
    released_from_git,
    snapshot,
    unrecorded_releases,
)

ROOT = Path(__file__).parents[2]
PRODUCT = AvroDir(AVRO_DIR)


def test_every_schema_change_is_full_transitive_compatible_and_recorded():
    problems = history_problems(PRODUCT)
    assert not problems, ("schema history refused (a registry in FULL_TRANSITIVE mode would "
                          "refuse the same change):\n" + "\n".join(problems))


def test_every_committed_version_of_a_schema_is_in_history():
    released = released_from_git(AVRO_DIR)
    if released is None:
        pytest.skip("not a full git clone: the committed versions cannot be listed")
    assert set(PRODUCT.names()) <= set(released)
    missing = unrecorded_releases(PRODUCT, released)
    assert not missing, "\n".join(missing)


def wire(schema_text: str, record: dict) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + stable_schema_id(schema_text).to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(schema_text)), record)
    return buf.getvalue()


def test_records_of_every_released_version_decode_into_todays_schema():
    codec = AvroCodec()
    random.seed(15)  # fastavro's generator draws from the module's generator
    checked = expected = 0
    for name in PRODUCT.names():
        first = max((b["version"] for b in PRODUCT.breaks().get(name, [])), default=1)
        current = fastavro.parse_schema(json.loads(PRODUCT.text(name)))
        for number, text in enumerate(PRODUCT.versions(name), 1):
            for rec in fastavro.utils.generate_many(json.loads(text), 5):
                data = wire(text, rec)
                if number < first:  # before a recorded break: refused with a reason, never garbage
                    expected -= 1
                    with pytest.raises(ValidationError, match=f"cannot decode as {name}"):
                        codec.decode(data, name)
                    continue
                got = codec.decode(data, name)
                assert set(got) == {f["name"] for f in current["fields"]}
                kept = {k for k in rec if k in got}
                assert all(_same_value(got[k], rec[k]) for k in kept), (name, number)
                checked += 1
        expected += 5 * len(PRODUCT.versions(name))
    assert checked == expected > 100


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))  # the generator makes NaNs too
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() >= b.keys() and all(_same_value(a[k], b[k]) for k in b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture
def staged(tmp_path) -> AvroDir:
    """A copy of the product's schemas to change."""
    shutil.copytree(AVRO_DIR, tmp_path / "avro")
    return AvroDir(tmp_path / "avro")


def edit(schemas: AvroDir, name: str, change) -> None:
    path = schemas.root / f"{name}.avsc"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1))


def test_an_old_version_missing_from_history_is_an_unknown_schema_id(staged):
    old = staged.versions("Alert")[0]
    rec = next(fastavro.utils.generate_many(json.loads(old), 1))
    assert AvroCodec(schemas=staged).decode(wire(old, rec), "Alert")["alert_id"] == rec["alert_id"]
    (staged.history_root / "Alert" / "v1.avsc").unlink()
    with pytest.raises(ValidationError, match="unknown schema id"):
        AvroCodec(schemas=AvroDir(staged.root)).decode(wire(old, rec), "Alert")


def test_a_current_schema_changed_without_recording_it_is_refused(staged):
    edit(staged, "ConfigRecord", lambda d: d["fields"].append(
        {"name": "owner", "type": ["null", "string"], "default": None}))
    problems = history_problems(AvroDir(staged.root))
    assert problems == [
        f"ConfigRecord.avsc is not the last version in history/ConfigRecord/: {HOW_TO_RECORD}"]


def test_snapshot_records_a_compatible_change_as_the_next_version(staged):
    edit(staged, "EntityState", lambda d: d["fields"].append(
        {"name": "zone_hint", "type": ["null", "string"], "default": None}))
    (staged.root / "Probe.avsc").write_text(json.dumps(
        {"type": "record", "name": "Probe", "fields": [{"name": "id", "type": "string"}]}))
    before = len(staged.versions("EntityState"))
    # the command as a developer runs it
    run = subprocess.run([sys.executable, "-m", "schemas.history", "snapshot", "--dir", str(staged.root)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert f"EntityState/v{before + 1}.avsc" in run.stdout and "Probe/v1.avsc" in run.stdout
    after = AvroDir(staged.root)
    assert json.loads(after.versions("EntityState")[-1]) == json.loads(after.text("EntityState"))
    assert history_problems(after) == []
    assert snapshot(after) == ([], [])  # nothing left to record
    assert main(["check", "--dir", str(staged.root)]) == 0


@pytest.mark.parametrize("change,why", [
    (lambda d: d["fields"].append({"name": "owner", "type": "string"}), "field added without a default"),
    (lambda d: d["fields"].pop(0), "field without a default removed"),
    (lambda d: d["fields"][1].update(type="long"), "string field turned long"),
])
def test_snapshot_refuses_an_incompatible_change_and_writes_nothing(staged, change, why, capsys):
    edit(staged, "ConfigRecord", change)
    assert main(["snapshot", "--dir", str(staged.root)]) == 1, why
    assert "refused: ConfigRecord v2 vs v1" in capsys.readouterr().err
    assert len(AvroDir(staged.root).versions("ConfigRecord")) == 1
    assert main(["check", "--dir", str(staged.root)]) == 1  # and CI keeps refusing it


def test_an_incompatible_version_written_by_hand_is_refused(staged):
    v1 = json.loads(staged.versions("ConfigRecord")[0])
    v1["fields"].append({"name": "owner", "type": "string"})
    (staged.history_root / "ConfigRecord" / "v2.avsc").write_text(json.dumps(v1))
    (staged.root / "ConfigRecord.avsc").write_text(json.dumps(v1))
    problems = history_problems(AvroDir(staged.root))
    assert problems and all(p.startswith("ConfigRecord v2 vs v1") for p in problems)
    assert "reader_field_missing_default_value: owner" in problems[0]


def test_a_gap_in_version_numbers_is_refused(staged):
    (staged.history_root / "Alert" / "v2.avsc").rename(staged.history_root / "Alert" / "v7.avsc")
    assert "Alert: versions [1, 3, 7] are not v1..v3" in history_problems(AvroDir(staged.root))


def test_breaks_must_be_real_and_explained(staged):
    breaks_file = staged.history_root / "breaks.json"
    breaks_file.unlink()
    problems = history_problems(AvroDir(staged.root))
    assert problems and all(p.startswith("EvaluationResult v2 vs v1") for p in problems)
    breaks_file.write_text(json.dumps({"EvaluationResult": [{"version": 2, "why": ""}],
                                       "Alert": [{"version": 3, "why": "because"}],
                                       "CepState": [{"version": 9, "why": "no such version"}]}))
    assert sorted(history_problems(AvroDir(staged.root))) == [
        "breaks.json: Alert v3 is compatible with every earlier version: not a break, remove the entry",
        "breaks.json: CepState has no v9 that could break",
        "breaks.json: EvaluationResult v2 says no why"]


def test_an_edited_history_file_is_caught_against_git(staged):
    released = released_from_git(AVRO_DIR)
    if released is None:
        pytest.skip("not a full git clone")
    path = staged.history_root / "Alert" / "v2.avsc"
    doc = json.loads(path.read_text())
    doc["fields"].append({"name": "sneaked", "type": "int", "default": 0})
    path.write_text(json.dumps(doc))  # v2 rewritten in place instead of a v4 added
    assert unrecorded_releases(AvroDir(staged.root), released) == [(
        "Alert: a committed version is missing from history/Alert/ "
        f"(history files are only ever added, never edited): {HOW_TO_RECORD}")]
    # the snapshot puts the committed content back, and the current one after it (it is last)
    written, refused = snapshot(AvroDir(staged.root), released)
    assert refused == [] and [p.name for p in written] == ["v4.avsc", "v5.avsc"]
    assert unrecorded_releases(AvroDir(staged.root), released) == []
    assert history_problems(AvroDir(staged.root)) == []


def test_snapshot_also_records_a_committed_content_history_lacks(staged):
    """A schema committed twice between two snapshots: both contents were released."""
    def with_fields(*names):
        doc = json.loads(staged.text("ConfigRecord"))
        doc["fields"] += [{"name": n, "type": ["null", "string"], "default": None} for n in names]
        return json.dumps(doc)
    released = {"ConfigRecord": [staged.versions("ConfigRecord")[0], with_fields("owner")]}
    (staged.root / "ConfigRecord.avsc").write_text(with_fields("owner", "team"))
    written, refused = snapshot(AvroDir(staged.root), released)
    assert refused == [] and [p.name for p in written] == ["v2.avsc", "v3.avsc"]
    after = AvroDir(staged.root)
    assert [len(json.loads(v)["fields"]) for v in after.versions("ConfigRecord")] == [7, 8, 9]
    assert history_problems(after) == [] and unrecorded_releases(after, released) == []
    # an incompatible committed content is refused like a current one, and nothing is written
    broken = json.loads(with_fields("owner", "team", "region"))
    broken["fields"][-1] = {"name": "region", "type": "string"}
    released["ConfigRecord"].append(json.dumps(broken))
    assert snapshot(after, released)[0] == [] and len(AvroDir(staged.root).versions("ConfigRecord")) == 3


def test_a_record_with_bytes_that_are_not_utf8_is_a_validation_error(staged):
    """A schema may evolve bytes -> string (legal Avro); bytes that are not UTF-8 then fail
    with a reason instead of crashing the reader."""
    writer = json.dumps({"type": "record", "name": "Blob", "namespace": "io.geoflux",
                         "fields": [{"name": "v", "type": "bytes"}]})
    reader = writer.replace('"bytes"', '"string"')
    (staged.root / "Blob.avsc").write_text(reader)
    (staged.history_root / "Blob").mkdir()
    (staged.history_root / "Blob" / "v1.avsc").write_text(writer)
    codec = AvroCodec(schemas=AvroDir(staged.root))
    assert codec.decode(wire(writer, {"v": "é".encode()}), "Blob") == {"v": "é"}
    with pytest.raises(ValidationError, match="cannot decode as Blob"):
        codec.decode(wire(writer, {"v": b"\x8f"}), "Blob")


def test_local_registry_knows_every_version_and_refuses_an_id_clash(monkeypatch):
    registry = LocalSchemaRegistry()
    for name in PRODUCT.history_names():
        for text in PRODUCT.versions(name):
            assert json.loads(registry.schema_by_id(stable_schema_id(text)))["name"] == name
    with pytest.raises(ValidationError, match="unknown schema id 7 "):
        registry.schema_by_id(7)
    import schemas.codec

    monkeypatch.setattr(schemas.codec, "_id_of_form", lambda form: 42)
    with pytest.raises(PermanentError, match="schema id 42 of Alert-value clashes"):
        LocalSchemaRegistry()
