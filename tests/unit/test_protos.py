"""Generated stubs are fresh, and our `inference` protocol matches the one tritonclient speaks."""

import filecmp
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DUMP = r"""
import json, sys
from google.protobuf.descriptor import FieldDescriptor
def fields(d):
    return {f.name: [f.number, f.type, f.is_repeated if hasattr(f, "is_repeated") else f.label == 3,
                     f.message_type.name if f.message_type else ""] for f in d.fields}
def walk(d, prefix, out):
    out[prefix + d.name] = fields(d)
    for n in d.nested_types:
        if not n.GetOptions().map_entry:
            walk(n, prefix + d.name + ".", out)
out, services = {}, {}
for module in sys.argv[1:]:
    mod = __import__(module, fromlist=["DESCRIPTOR"])
    for d in mod.DESCRIPTOR.message_types_by_name.values():
        walk(d, "", out)
    for s in mod.DESCRIPTOR.services_by_name.values():
        services[s.full_name] = {m.name: [m.input_type.name, m.output_type.name, m.client_streaming,
                                          m.server_streaming] for m in s.methods}
print(json.dumps({"messages": out, "services": services}))
"""


def _dump(*modules: str) -> dict:
    out = subprocess.run([sys.executable, "-c", DUMP, *modules], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "server" / "gen_protos.py"), "--out", str(tmp_path / "gen")], check=True)
    comparison = filecmp.dircmp(ROOT / "server" / "gen", tmp_path / "gen", ignore=["__pycache__"])

    def differences(c: filecmp.dircmp) -> list[str]:
        found = c.left_only + c.right_only + c.diff_files
        for sub in c.subdirs.values():
            found += differences(sub)
        return found

    assert differences(comparison) == [], "run: python server/gen_protos.py"


def test_wire_contract_matches_tritonclient() -> None:
    # Separate processes: tritonclient and our stubs both define `inference.*` symbols.
    ours = _dump("edgeq_server.gen.inference.grpc_service_pb2", "edgeq_server.gen.inference.model_config_pb2")
    theirs = _dump("tritonclient.grpc.service_pb2", "tritonclient.grpc.model_config_pb2")
    for name, our_fields in ours["messages"].items():
        assert name in theirs["messages"], f"message {name} is not in the protocol"
        for field, spec in our_fields.items():
            assert theirs["messages"][name].get(field) == spec, f"{name}.{field}: ours {spec}, protocol {theirs['messages'][name].get(field)}"
    service = "inference.GRPCInferenceService"
    for method, spec in ours["services"][service].items():
        assert theirs["services"][service][method] == spec, method
    # Every message a served RPC exchanges is declared completely, not just compatibly.
    for method, (request, response, *_rest) in ours["services"][service].items():
        for name in (request, response):
            assert set(ours["messages"][name]) == set(theirs["messages"][name]), f"{name} lacks fields"
