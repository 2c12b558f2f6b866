"""Compatibility tests: real third-party Kafka clients against a real `strom server` process.

Three independent client stacks are the judges here:
  - kafka-python, a pure-Python implementation of the Kafka protocol (shares no code with librdkafka);
  - confluent-kafka, the Python binding of a current librdkafka (bundled in its wheel);
  - kcat from Debian's packages, built on an old librdkafka (2.0.2), which guards wire compatibility
    with older clients (for example tagged fields written at their defaults).

One module per client (test_kafka_python.py, test_confluent_kafka.py, test_kcat.py), and
test_cross_client.py where all three write to and read from one partition. Those consumers use
assign(); test_groups.py covers consumer groups (subscribe, commit, resume, group admin) with
kafka-python and confluent-kafka.

How to run: `bash scripts/test` runs these after the Rust tests. By hand:
    bash scripts/install-test-deps        # kcat from apt, the Python clients into target/compat-venv
    cargo build -p strom
    STROM_BIN=target/debug/strom target/compat-venv/bin/python -m pytest -q tests/compat

This module provides the fixtures: `strom` (a broker with default test settings) and `start_strom`
(a factory taking server.properties overrides). Each broker runs on a free loopback port with its
own temporary data directory, is always killed and reaped at teardown, and its log is attached to
the report of a failing test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# How long a broker gets to start accepting TCP connections.
STARTUP_DEADLINE_S = 20.0
# How long a broker gets to exit after SIGTERM before it is killed.
SHUTDOWN_DEADLINE_S = 10.0
# Default bound for waiting on a condition in a test.
WAIT_DEADLINE_S = 20.0
# Interval between two checks of a polled condition.
POLL_INTERVAL_S = 0.02
# Bound for one kcat run.
KCAT_TIMEOUT_S = 20.0
# Attempts at finding a free port (another process may grab the one we picked before the broker binds).
PORT_ATTEMPTS = 3

T = TypeVar("T")


def strom_binary() -> Path:
    """The `strom` executable under test: $STROM_BIN, else target/debug/strom."""
    configured = os.environ.get("STROM_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "strom"
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not path.is_file():
        pytest.fail(f"strom binary not found at {path}: run `cargo build -p strom` or set STROM_BIN")
    return path


def wait_until(
    condition: Callable[[], T], what: str | Callable[[], str], deadline_s: float = WAIT_DEADLINE_S
) -> T:
    """Polls `condition` until it returns a truthy value (returned) or the deadline passes (fails,
    describing the wait with `what`, or with what `what()` says at that moment)."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            pytest.fail(f"timed out after {deadline_s}s waiting for {description}")
        time.sleep(POLL_INTERVAL_S)


def unique_topic(prefix: str) -> str:
    """A topic name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StromBroker:
    """A running `strom server` child process with its own data directory."""

    def __init__(self, workdir: Path, overrides: dict[str, str]):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "strom.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._overrides = overrides

    @property
    def bootstrap(self) -> str:
        """`host:port` for a client's bootstrap servers."""
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the broker wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"<no broker log: {error}>"

    def start(self) -> None:
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            if self._spawn_and_wait_ready():
                return
            if "Address already in use" not in self.log():
                break
        pytest.fail(f"strom server did not start\n--- broker log ---\n{self.log()}")

    def _spawn_and_wait_ready(self) -> bool:
        listener = f"PLAINTEXT://127.0.0.1:{self.port}"
        props = {
            "node.id": "1",
            "listeners": listener,
            "advertised.listeners": listener,
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            **self._overrides,
        }
        args = [str(strom_binary()), "server"]
        for key, value in props.items():
            args += ["--override", f"{key}={value}"]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return True
            except OSError:
                time.sleep(POLL_INTERVAL_S)
        self.stop()
        return False

    def restart(self, crash: bool = False) -> None:
        """Stops the broker (SIGKILL when `crash`, else a clean stop) and starts it again on the same
        port and data directory, so connected clients can reconnect."""
        if crash and self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        self.stop()
        if not self._spawn_and_wait_ready():
            pytest.fail(f"strom server did not restart on port {self.port}\n--- broker log ---\n{self.log()}")

    def exit_status(self) -> int | None:
        """None while the broker runs, else its exit status."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still running after the deadline; always reaps."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SHUTDOWN_DEADLINE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def kcat(broker: StromBroker, *args: str, stdin: str | None = None) -> str:
    """Runs kcat against the broker; fails the test on a non-zero exit or an error on stderr."""
    binary = shutil.which("kcat")
    if binary is None:
        pytest.fail("kcat not found on PATH: run scripts/install-test-deps")
    completed = subprocess.run(
        [binary, "-b", broker.bootstrap, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=KCAT_TIMEOUT_S,
    )
    errors = [line for line in completed.stderr.splitlines() if "ERROR" in line or "FAIL" in line]
    assert completed.returncode == 0 and not errors, (
        f"kcat {' '.join(args)} exited {completed.returncode}\n"
        f"--- stdout ---\n{completed.stdout}\n--- stderr ---\n{completed.stderr}"
    )
    return completed.stdout


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attaches the log of every broker the test started to the report of a failing test."""
    report = yield
    if report.when == "call" and report.failed:
        for broker in getattr(item, "strom_brokers", []):
            report.sections.append((f"strom log ({broker.bootstrap})", broker.log()))
    return report


@pytest.fixture
def start_strom(request: pytest.FixtureRequest) -> Iterator[Callable[..., StromBroker]]:
    """Factory: `start_strom({"num.partitions": "3"})` starts a broker with those overrides."""
    brokers: list[StromBroker] = []
    workdirs: list[Path] = []
    setattr(request.node, "strom_brokers", brokers)

    def start(overrides: dict[str, str] | None = None) -> StromBroker:
        workdir = Path(tempfile.mkdtemp(prefix="strom-compat-"))
        workdirs.append(workdir)
        broker = StromBroker(workdir, overrides or {})
        brokers.append(broker)
        broker.start()
        return broker

    yield start

    crashed = [
        f"exit status {broker.exit_status()}\n{broker.log()}"
        for broker in brokers
        if broker.exit_status() is not None
    ]
    for broker in brokers:
        broker.stop()
    for workdir in workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
    if crashed:
        pytest.fail("strom server exited during the test\n" + "\n".join(crashed))


@pytest.fixture
def strom(start_strom: Callable[..., StromBroker]) -> StromBroker:
    """A broker with default test settings (one partition per auto-created topic)."""
    return start_strom()
