"""The model store: atomic publish, manifests, tamper detection, crash leftovers."""

import json
import os
from pathlib import Path

import pytest

from edgeq.errors import FailedPrecondition, InvalidArgument, NotFound
from edgeq.store import ModelStore
from edgeq.store.bundle import export_bundle, import_bundle
from edgeq.store.repository import STAGING, verify_manifest


def _stage(store: ModelStore, payload: bytes = b"<xml/>") -> Path:
    staged = store.staging_dir()
    (staged / "model.xml").write_bytes(payload)
    (staged / "model.bin").write_bytes(b"\0" * 16)
    (staged / "edgeq.json").write_text(json.dumps({"accuracy": {"metric": "top1"}}))
    return staged


def test_publish_numbers_versions_and_writes_manifest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = store.publish("vit", _stage(store))
    second = store.publish("vit", _stage(store, b"<xml2/>"))
    assert (first.version, second.version) == (1, 2)
    assert [v.version for v in store.versions("vit")] == [1, 2]
    assert store.get("vit").version == 2 and store.get("vit", 1).xml.read_bytes() == b"<xml/>"
    manifest = verify_manifest(second.path)
    assert set(manifest["files"]) == {"model.xml", "model.bin", "edgeq.json"}
    assert store.validate() == []


def test_unknown_models_and_versions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(NotFound):
        store.get("nope")
    store.publish("vit", _stage(store))
    with pytest.raises(NotFound, match="no version 5"):
        store.get("vit", 5)
    with pytest.raises(InvalidArgument):
        store.get("../etc")


def test_tampering_is_detected(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    info = store.publish("vit", _stage(store))
    (info.path / "model.bin").write_bytes(b"\1" * 16)
    with pytest.raises(InvalidArgument, match="does not match"):
        verify_manifest(info.path)
    assert store.validate()


def test_half_written_versions_are_invisible_and_swept(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    # A crash before the rename leaves only a staging dir of a dead process: never listed, swept.
    dead = tmp_path / STAGING / "999999-deadbeef"
    dead.mkdir(parents=True)
    (dead / "model.xml").write_text("partial")
    # A version directory without a manifest (cannot happen through publish) is never listed.
    (tmp_path / "vit" / "7").mkdir(parents=True)
    store = ModelStore(tmp_path)
    assert not dead.exists()
    assert store.versions("vit") == [] and store.names() == []


def test_staging_of_a_live_process_is_kept(tmp_path: Path) -> None:
    live = tmp_path / STAGING / f"{os.getpid()}-abc"
    live.mkdir(parents=True)
    ModelStore(tmp_path)
    assert live.exists()


def test_delete_and_bundle_round_trip(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "a")
    info = store.publish("vit", _stage(store))
    bundle = export_bundle(info, tmp_path / "vit.tar")
    other = ModelStore(tmp_path / "b")
    imported = import_bundle(other, bundle)
    assert imported.name == "vit" and (imported.path / "model.xml").read_bytes() == b"<xml/>"
    assert import_bundle(other, bundle) == imported  # idempotent: no second version
    store.delete("vit", 1)
    assert store.names() == []


def test_tampered_bundle_changes_nothing(tmp_path: Path) -> None:
    import tarfile

    store = ModelStore(tmp_path / "a")
    info = store.publish("vit", _stage(store))
    (info.path / "model.xml").write_bytes(b"<evil/>")  # after the manifest was written
    bundle = tmp_path / "evil.tar"
    with tarfile.open(bundle, "w") as archive:
        for item in info.path.iterdir():
            archive.add(item, arcname=f"vit/1/{item.name}")
    target = ModelStore(tmp_path / "b")
    with pytest.raises(InvalidArgument):
        import_bundle(target, bundle)
    assert target.names() == [] and not any((tmp_path / "b" / STAGING).iterdir())


def test_held_versions_are_stored_but_not_servable_until_promoted(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    served = store.publish("vit", _stage(store))
    held = store.publish("vit", _stage(store, b"<slow/>"), hold="INT8 at x0.90, below x1.1")
    assert held.held() == "INT8 at x0.90, below x1.1" and served.held() is None
    assert [v.version for v in store.versions("vit")] == [1, 2]
    assert [v.version for v in store.servable("vit")] == [1]
    assert store.validate() == []  # the marker lives beside the version: its manifest is untouched
    with pytest.raises(FailedPrecondition, match="promote it first"):
        export_bundle(held, tmp_path / "held.tar")
    store.promote("vit", 2)
    assert store.get("vit", 2).held() is None and [v.version for v in store.servable("vit")] == [1, 2]
    assert export_bundle(store.get("vit", 2), tmp_path / "promoted.tar").is_file()


def test_a_held_version_with_the_float_ir_exports_for_the_device_to_decide(tmp_path: Path) -> None:
    from edgeq.store.repository import FLOAT_FILES

    store = ModelStore(tmp_path / "a")
    staged = _stage(store)
    for name in FLOAT_FILES:
        (staged / name).write_bytes(b"float")
    held = store.publish("vit", staged, hold="INT8 at x0.90, below x1.1")
    bundle = export_bundle(held, tmp_path / "held.tar")
    imported = import_bundle(ModelStore(tmp_path / "b"), bundle)
    assert imported.has_float and imported.held() is None  # the device's own choice decides what it serves


def test_a_stale_hold_marker_never_holds_a_later_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "1.held").write_text(json.dumps({"reason": "left by a crash"}))
    assert store.publish("vit", _stage(store)).held() is None
    store.publish("vit", _stage(store, b"<2/>"), hold="slow")
    store.delete("vit", 2)
    assert not (tmp_path / "vit" / "2.held").exists()


def _ovms_layout_problems(store_root: Path) -> list[str]:
    """OpenVINO Model Server's repository rules for what config.json lists: each base_path holds
    positive-integer version folders, each with exactly one IR (.xml with its .bin)."""
    config = json.loads((store_root / "config.json").read_text())
    problems = []
    for entry in config["model_config_list"]:
        model = entry["config"]
        base = store_root / model["base_path"]
        for version in model["model_version_policy"]["specific"]["versions"]:
            folder = base / str(version)
            xmls, bins = sorted(folder.glob("*.xml")), sorted(folder.glob("*.bin"))
            if not (isinstance(version, int) and version > 0 and folder.is_dir()):
                problems.append(f"{model['name']}: version {version!r} is not a positive-integer folder")
            elif len(xmls) != 1 or len(bins) != 1 or xmls[0].stem != bins[0].stem:
                problems.append(f"{model['name']}/{version}: needs exactly one .xml and its .bin, has {xmls + bins}")
    return problems


def test_config_json_serves_in_ovms_what_edgeq_serves(tmp_path: Path) -> None:
    """OVMS ignores `.held` markers: config.json's version policy is what keeps held versions out."""
    store = ModelStore(tmp_path)

    def served() -> dict[str, list[int]]:
        config = json.loads((tmp_path / "config.json").read_text())
        return {e["config"]["name"]: e["config"]["model_version_policy"]["specific"]["versions"]
                for e in config["model_config_list"]}

    store.publish("vit", _stage(store), hold="below the speed gate")
    assert served() == {}  # its only version is held: OVMS must not serve the model at all
    store.publish("vit", _stage(store))
    store.publish("deit", _stage(store), hold="below the speed gate")
    assert served() == {"vit": [2]}
    store.promote("vit", 1)
    assert served() == {"vit": [1, 2]}
    store.delete("vit", 2)
    store.promote("deit", 1)
    assert served() == {"deit": [1], "vit": [1]}
    assert served() == {name: [v.version for v in store.servable(name)] for name in store.names()}
    assert _ovms_layout_problems(tmp_path) == []
    (tmp_path / "vit" / "1" / "extra.xml").write_text("<xml/>")
    assert _ovms_layout_problems(tmp_path)  # the check itself sees a broken version


def test_half_a_float_ir_is_refused_and_a_version_without_one_serves_int8(tmp_path: Path) -> None:
    from edgeq.store.repository import FLOAT_FILES

    store = ModelStore(tmp_path)
    staged = _stage(store)
    (staged / FLOAT_FILES[0]).write_bytes(b"<xml/>")
    with pytest.raises(InvalidArgument, match=FLOAT_FILES[1]):
        store.publish("vit", staged)
    plain = store.publish("vit", _stage(store))
    assert (plain.served_ir, plain.has_float, plain.serve_choice()) == ("int8", False, None)
    assert plain.served_files() == (plain.path / "model.xml", plain.path / "model.bin")
    # a recorded choice of float without the float IR still serves INT8
    store.record_serve_choice(plain, {"ir": "float", "why": "by hand"})
    assert plain.serve_choice() == {"ir": "float", "why": "by hand"} and plain.served_ir == "int8"
    assert store.validate() == []
