"""Schemathesis against the service's own OpenAPI schema: generated requests, and no server error allowed.

The served model's name is given to schemathesis as the `{name}` path parameter, so the v2 routes are fuzzed past
their "unknown model" 404. A text model (MiniLM embedder) also exercises `/predict/text`.

Usage: python -m tests.performancetests.fuzz [--model deploy/arg-binary] [--max-examples 100]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import Server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("deploy/arg-binary"))
    parser.add_argument("--max-examples", type=int, default=100, help="test cases per API operation")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/fuzz.md"))
    args = parser.parse_args()
    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    server = Server({"ARGINATOR_MODEL": str(args.model), "ARGINATOR_MAX_ROWS": "64", "HF_HUB_OFFLINE": "1"}).wait()
    try:
        with urllib.request.urlopen(f"{server.url}/metadata", timeout=10) as response:
            name = json.load(response)["name"]
        config = Path(tempfile.mkdtemp()) / "schemathesis.toml"
        config.write_text(f'[parameters]\n"path.name" = {json.dumps(name)}\n')
        result = subprocess.run(
            [
                schemathesis,
                "--config-file",
                str(config),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                str(args.max_examples),
                "--seed",
                "1",
                "--generation-database",
                "none",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        alive = server.alive()
        shutil.rmtree(config.parent)
    finally:
        log = server.stop()
    output = result.stdout + result.stderr
    generated = sum(int(n) for n in re.findall(r"(\d+) generated", output))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    report = (
        f"# Fuzzing with schemathesis\n\n{stamp}: `{args.model}` (served as `{name}`), check `not_a_server_error`, "
        f"max {args.max_examples} examples per operation, seed 1.\n\n**{generated} generated test cases; exit code "
        f"{result.returncode}; server alive after: {alive}; 500s in the server log: {log.count(' 500 ')}.**\n\n"
        f"```\n{output.strip()[-6000:]}\n```\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0 if result.returncode == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
