"""The generated MCPServers (benches/render.rs) as the values of the plain chart: stdin is the
multi-document input of `hangar render`, stdout the values (JSON, which is YAML)."""
import json
import sys

import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
servers, groups = [], []
for doc in yaml.load_all(sys.stdin, Loader=Loader):
    if not doc:
        continue
    entry = {"metadata": doc["metadata"], "spec": doc.get("spec", {})}
    (servers if doc["kind"] == "MCPServer" else groups).append(entry)
json.dump({"servers": servers, "groups": groups}, sys.stdout)
