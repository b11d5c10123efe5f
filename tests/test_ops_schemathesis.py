"""schemathesis against a live node, from the node's own OpenAPI document.

Bounded and reproducible: a fixed seed, deterministic generation and a
fixed number of examples per operation (about half a minute here). Every
operation is exercised with a valid bearer token, in the examples,
coverage (boundary and invalid values), fuzzing and stateful (links
between operations) phases; a response fails the run if it is a 5xx, has
a status code the document does not list, or does not match the
document's schema for that status.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tests.harness import Node, call, new_user

CHECKS = ",".join([
    "not_a_server_error", "response_schema_conformance", "status_code_conformance",
    # Also held, since the fixes below: a 405 names the allowed methods, and
    # every answer has the content type the document gives.
    "unsupported_method", "content_type_conformance",
])
MAX_EXAMPLES = 30
SEED = 20261129


def schemathesis_bin() -> str:
    found = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    assert os.path.exists(found), "schemathesis is not installed: pip install -e '.[test]'"
    return found


async def test_schemathesis_finds_no_server_error_or_schema_violation() -> None:
    node = Node().start()
    try:
        user = await new_user(node)
        await user.device("mobile")
        run = subprocess.run(
            [schemathesis_bin(), "run", f"{node.base}/api/v1/openapi.json",
             "--header", f"Authorization: Bearer {user.token}",
             "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
             "--generation-deterministic", "--workers", "1",
             "--request-timeout", "15", "--no-color"],
            capture_output=True, text=True, timeout=300,
            cwd=node.data_dir,  # its cache (.schemathesis/) goes with the node's data, not the checkout
        )
        output = run.stdout + run.stderr
        print(output[-1200:])  # the summary, for `pytest -s`
        assert run.returncode == 0, output[-6000:]
        # Every operation of the document was tested, and every case passed.
        selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
        assert selected and selected.group(1) == selected.group(2) == selected.group(3), output[-3000:]
        cases = re.search(r"(\d+) generated, (\d+) passed", output)
        assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) > 100, output[-3000:]
    finally:
        assert node.stop() == 0, node.log()
        shutil.rmtree(node.data_dir, ignore_errors=True)


# Findings of exploratory runs (``--checks all``, 200 examples), now fixed:


async def test_a_whole_number_written_as_a_float_is_an_integer(node: Node) -> None:
    """JSON (and JSON Schema's "integer") do not tell 2 from 2.0; 2.5 is still refused."""
    user = await new_user(node)
    phone = await user.device("mobile")
    r = await user.call("POST", "/api/v1/notifications", {"app_name": "Mail", "priority": 2.0},
                        headers={"X-Device-ID": phone})
    assert r.status == 201 and r.body["priority"] == 2
    r = await user.call("POST", "/api/v1/notifications", {"app_name": "Mail", "priority": 2.5},
                        headers={"X-Device-ID": phone})
    assert r.status == 400 and "priority" in r.body["error"]["fields"]


async def test_method_not_allowed_names_the_allowed_methods(node: Node) -> None:
    """RFC 9110: a 405 carries Allow, also for methods Tornado refuses outright (TRACE)."""
    for method, path, allowed in (("TRACE", "/api/v1/devices", "GET, POST, OPTIONS"),
                                  ("DELETE", "/health", "GET, OPTIONS"),
                                  ("POST", "/", "GET")):
        r = await call(node, method, path)
        assert r.status == 405 and r.headers["Allow"] == allowed, (method, path)
