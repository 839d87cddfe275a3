"""LOG_FILE: several real processes log to one rotating file at once, and across many
rotations every line arrives exactly once, whole, as JSON, with secrets redacted."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
LINES_PER_PROCESS = 400

WRITER = """
import logging, os, sys, time
import django
django.setup()
go = sys.argv[2]
while not os.path.exists(go):  # start together: wait for the go file
    time.sleep(0.005)
log = logging.getLogger("parley.logtest")
proc = int(sys.argv[1])
for seq in range(int(sys.argv[3])):
    log.info("line", extra={"proc": proc, "seq": seq, "pad": "x" * (50 + seq % 200)})
log.info("token Bearer abc.def.ghi for proc", extra={"proc": proc, "seq": -1})
"""


def test_processes_share_a_rotating_file_without_losing_tearing_or_repeating_lines(tmp_path):
    log_file = tmp_path / "logs" / "parley.log"
    log_file.parent.mkdir()
    go = tmp_path / "go"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings.test",
        "LOG_FILE": str(log_file),
        "LOG_FILE_MAX_BYTES": str(8 * 1024),
        "LOG_FILE_BACKUP_COUNT": "500",  # keep every rotated file, so none is lost by count
    }
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(proc), str(go), str(LINES_PER_PROCESS)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for proc in range(PROCESSES)
    ]
    go.touch()
    assert [w.wait(timeout=300) for w in writers] == [0] * PROCESSES

    files = sorted(log_file.parent.glob("parley.log*"))
    assert len(files) > 10, "the test should cross many rotations"
    seen: list[tuple[int, int]] = []
    for path in files:
        for raw in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(raw)  # a torn or interleaved line would not parse
            assert record["logger"] == "parley.logtest" and record["level"] == "INFO"
            if record["seq"] == -1:
                assert "abc.def.ghi" not in raw and "[redacted]" in record["message"]
            seen.append((record["proc"], record["seq"]))
    expected = [(p, s) for p in range(PROCESSES) for s in [*range(LINES_PER_PROCESS), -1]]
    assert len(seen) == len(set(seen)), "a line was written twice"
    assert sorted(seen) == sorted(expected), "a line was lost"
