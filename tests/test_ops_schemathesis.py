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

from tests.harness import Node, new_user

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
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
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-6000:]
        # Every operation of the document was tested, and every case passed.
        selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
        assert selected and selected.group(1) == selected.group(2) == selected.group(3), output[-3000:]
        cases = re.search(r"(\d+) generated, (\d+) passed", output)
        assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) > 100, output[-3000:]
    finally:
        assert node.stop() == 0, node.log()
        shutil.rmtree(node.data_dir, ignore_errors=True)
