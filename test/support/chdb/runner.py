"""A current ClickHouse engine (chdb-core) for the test suite, one session per process.

Reads one JSON request per line on stdin: {"sql": "...", "format": "JSONEachRow"} (format
optional; omit it for statements without rows). Answers one JSON line per request on stdout:
{"ok": true, "data": "<output text>"} or {"ok": false, "error": "<message>"}. A line
{"ok": true, "version": "..."} is written first, once the engine is ready.
"""

import json
import sys

from chdb import session

# Server defaults where chdb's differ, so the engine answers like a clickhouse-server would.
SERVER_DEFAULTS = ["SET implicit_select = 0"]


def answer(reply):
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def main():
    engine = session.Session()
    for statement in SERVER_DEFAULTS:
        engine.query(statement)
    answer({"ok": True, "version": engine.query("SELECT version()", "TSVRaw").bytes().decode().strip()})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            result = engine.query(request["sql"], request.get("format") or "TSV")
            answer({"ok": True, "data": result.bytes().decode()})
        except Exception as error:  # every failure goes back to the caller, the process lives on
            answer({"ok": False, "error": str(error)})
    engine.close()


if __name__ == "__main__":
    main()
