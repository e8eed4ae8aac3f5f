"""upo's locks between processes are filelock's, so upo imports and locks on every OS: nothing imports fcntl (POSIX
only, absent on Windows), and with fcntl unavailable the locks still exclude each other (filelock's fallback)."""

import ast
import subprocess
import sys
import time
from pathlib import Path

UPO = Path(__file__).parents[1] / "upo"

# Run with fcntl made unimportable, as on Windows: hold the lock for a while, or try to take it.
CHILD = """
import sys, time
sys.modules["fcntl"] = None
from upo.files import exclusive_lock, try_lock
lock, mode = sys.argv[1], sys.argv[2]
if mode == "hold":
    with exclusive_lock(lock, "waiting"):
        print("held", flush=True)
        time.sleep(4)
else:
    with try_lock(lock) as taken:
        print("taken" if taken else "busy", flush=True)
"""


def test_nothing_in_upo_imports_fcntl():
    for path in UPO.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) else [])
            assert "fcntl" not in names, path


def test_locks_exclude_each_other_where_fcntl_is_missing(tmp_path):
    lock = str(tmp_path / "run.lock")
    child = [sys.executable, "-W", "ignore", "-c", CHILD, lock]
    holder = subprocess.Popen([*child, "hold"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = subprocess.run([*child, "try"], capture_output=True, text=True, timeout=60)
        assert busy.stdout.strip() == "busy", busy.stderr
    finally:
        holder.wait(timeout=60)
    time.sleep(0.1)
    free = subprocess.run([*child, "try"], capture_output=True, text=True, timeout=60)
    assert free.stdout.strip() == "taken", free.stderr
