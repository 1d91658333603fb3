"""Bounded load test: 32 concurrent connections for 60 s against a real uvicorn server; any error fails it.

The load mixes the three request kinds clients send: single-row JSON, 256-row JSON and 1024-row raw float32
bodies. `wrk` (Debian package) generates it; results go to `reports/benchmarks/loadtest.md`.

Usage: python -m tests.performancetests.loadtest [--model deploy/arg-binary] [--seconds 60] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from arginator.serving.predictor import Predictor
from tests.conftest import Server

LUA = """
local function slurp(path)
  local f = io.open(path, "rb"); local data = f:read("*a"); f:close(); return data
end
local kinds = {
  {"/predict", "application/json", slurp("{dir}/one.json")},
  {"/predict", "application/json", slurp("{dir}/batch.json")},
  {"/predict", "application/octet-stream", slurp("{dir}/batch.bin")},
}
local n = 0
request = function()
  n = n + 1
  local kind = kinds[n % 3 + 1]
  return wrk.format("POST", kind[1], {{["Content-Type"] = kind[2]}}, kind[3])
end
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("deploy/arg-binary"))
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/loadtest.md"))
    args = parser.parse_args()
    dim = Predictor(args.model).input_dim
    rng = np.random.default_rng(0)
    server = Server({"ARGINATOR_MODEL": str(args.model), "ARGINATOR_THREADS": "1"}).wait()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "one.json").write_text(json.dumps(rng.normal(size=dim).tolist()))
            (Path(tmp) / "batch.json").write_text(json.dumps({"embeddings": rng.normal(size=(256, dim)).tolist()}))
            (Path(tmp) / "batch.bin").write_bytes(rng.normal(size=(1024, dim)).astype("<f4").tobytes())
            (Path(tmp) / "mix.lua").write_text(LUA.replace("{dir}", tmp).replace("{{", "{").replace("}}", "}"))
            output = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    f"-c{args.connections}",
                    f"-d{args.seconds}s",
                    "--timeout",
                    "10s",
                    "--latency",
                    "-s",
                    str(Path(tmp) / "mix.lua"),
                    server.url,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        alive = server.alive()
    finally:
        server.stop()
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0
    errors = socket_errors + non_2xx
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    report = (
        f"# Load test\n\n{stamp}: `{args.model}`, one uvicorn worker, wrk 2 threads, {args.connections} connections, "
        f"{args.seconds} s, a mix of 1-row JSON, 256-row JSON and 1024-row binary requests.\n\n"
        f"**{requests} requests, {errors} errors** (socket {socket_errors}, non-2xx {non_2xx}); server alive after: "
        f"{alive}.\n\n```\n{output.strip()}\n```\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0 if errors == 0 and alive and requests > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
