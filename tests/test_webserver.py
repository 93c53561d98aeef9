"""The demo code location in the real Dagster webserver: lineage and metadata over GraphQL."""

import json
import os
import subprocess
import sys
import time
import urllib.request

from tests.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERY = """{ assetNodes { assetKey { path } dependencyKeys { path }
  assetMaterializations(limit: 1) { metadataEntries { label } } } }"""


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def wait_until_up(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the webserver exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"webserver not up on port {port}")


def test_webserver_shows_lineage_and_metadata(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), DS_ASSETS_DATA=str(tmp_path / "data"))
    demo = subprocess.run(
        [sys.executable, "definitions.py"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    port = free_port()
    webserver = os.path.join(os.path.dirname(sys.executable), "dagster-webserver")
    process = subprocess.Popen(
        [webserver, "-f", "definitions.py", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_up(port, process)
        nodes = {
            "/".join(node["assetKey"]["path"]): node for node in graphql(port, QUERY)["assetNodes"]
        }
    finally:
        process.terminate()
        process.wait(30)
    upstream = {"/".join(d["path"]) for d in nodes["penguins_clean"]["dependencyKeys"]}
    assert upstream == {"penguins/train", "penguins/test"}
    labels = {
        e["label"]
        for e in nodes["penguins_features"]["assetMaterializations"][0]["metadataEntries"]
    }
    assert {"dagster/row_count", "dagster/column_schema", "preview", "num_shards"} <= labels
