"""Commands leave without the interpreter's teardown, yet as sys.exit would: atexit handlers run,
non-daemon threads finish, buffered output is flushed, the status is kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_script(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = "import atexit, sys, threading, time\nfrom pathlib import Path\n"
    script += "from imdb_mlops.common.exiting import exit_without_teardown\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)


class_with_finalizer = """
class Held:
    def __del__(self):
        Path("teardown-ran").write_text("yes")
held = Held()  # a module global: collected only by the interpreter's teardown
"""


def test_atexit_handlers_run_output_is_flushed_and_the_status_kept_but_teardown_is_skipped(tmp_path):
    proc = run_script(
        class_with_finalizer
        + """
atexit.register(lambda: Path("atexit-ran").write_text("yes"))
sys.stdout.write("buffered, no newline")
exit_without_teardown(3)
""",
        tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "atexit-ran").exists()
    assert not (tmp_path / "teardown-ran").exists()


def test_the_same_script_with_sys_exit_runs_the_teardown(tmp_path):
    # the control for the test above: the finalizer does run when the interpreter tears down
    proc = run_script(class_with_finalizer + "sys.exit(0)\n", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "teardown-ran").exists()


def test_a_running_non_daemon_thread_is_waited_for(tmp_path):
    proc = run_script(
        """
def late():
    time.sleep(0.5)
    Path("thread-finished").write_text("yes")
threading.Thread(target=late).start()
exit_without_teardown(0)
""",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "thread-finished").exists()


def test_a_message_as_the_code_is_printed_and_exits_1(tmp_path):
    proc = run_script('exit_without_teardown("error: something named")\n', tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: something named"
    assert run_script("exit_without_teardown(None)\n", tmp_path).returncode == 0
