"""`alignserve serve` as a child process, for the Python end-to-end tests
(openai_client_test.py, grpc_client_test.py, metrics_promtool_test.py).

The server is started on free ports (--port 0, and --grpc-port 0 when asked)
and its stderr is drained by a thread, which reads the ports, the served
model name and max_model_len from the start-up lines. Stdlib only.
"""
import re
import signal
import subprocess
import threading
import time

READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30


class ServeProcess:
    """One `alignserve serve`; `args` are the extra flags after `serve`."""

    def __init__(self, binary, args=(), grpc=False):
        self.lines = []
        self.port = None
        self.grpc_port = None
        self.model = None
        self.max_model_len = None
        self._grpc = grpc
        self._ready = threading.Event()
        command = [binary, "serve", "--port", "0", "--grpc-port", "0" if grpc else "-1", *args]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            m = re.search(r"gRPC on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.grpc_port = int(m.group(1))
            m = re.search(r"ready: model '([^']*)'.*max_model_len (\d+)", line)
            if m:
                self.model, self.max_model_len = m.group(1), int(m.group(2))
                self._ready.set()
        self._ready.set()  # stderr closed: the process is gone

    def wait_ready(self):
        """True once the model is loaded and every asked-for port is known."""
        self._ready.wait(READY_TIMEOUT_S)
        return (self.port is not None and self.model is not None and
                (self.grpc_port is not None or not self._grpc) and self.proc.poll() is None)

    def stop(self):
        """SIGTERM, then the exit code (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self._reader.join(5)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self, n=30):
        return "\n".join(self.lines[-n:])


def finish_run(name, result, server, started):
    """Stops `server` after a unittest run and prints the one-line verdict:
    FAIL if a test failed, the server died during the run, or SIGTERM did
    not give exit code 0. Returns the process exit code for the test."""
    crashed = server.proc.poll() is not None
    code = server.stop()
    ok = result.wasSuccessful()
    if crashed:
        print(f"{name}: FAIL: the server exited during the tests ({code})")
        ok = False
    elif code != 0:
        print(f"{name}: FAIL: SIGTERM gave exit code {code}, want 0")
        ok = False
    if not ok:
        print("--- server stderr (tail) ---\n" + server.log_tail())
    print(f"{name}: {'PASS' if ok else 'FAIL'} ({result.testsRun} tests, "
          f"{len(result.failures)} failures, {len(result.errors)} errors, exit code {code}) "
          f"in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1
