"""`mongo-backup` in a child process that a test can pause at a failpoint, then kill -9,
interrupt (Ctrl-C) or let go: the CLI exactly as a user or a cron job runs it.

    run = CliRun.start(["backup", "--to", url], pause_at="backup.data@2", env=env)
    run.wait_paused()          # the child reached the point and waits there
    run.resume()               # or: let it go on from there
    run.kill()                 # SIGKILL: no cleanup of any kind runs
    done = run.finish()        # returncode, stdout, stderr
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mongo_backup.engine.failpoints import DIR_ENV, ENV


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class CliRun:
    def __init__(self, proc: subprocess.Popen[str], marker_dir: Path, pause_at: str | None) -> None:
        self.proc = proc
        self.marker_dir = marker_dir
        self.pause_at = pause_at.partition("@")[0].partition("=")[0] if pause_at else None

    @classmethod
    def start(
        cls,
        args: Sequence[str],
        *,
        pause_at: str | None = None,
        failpoints: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CliRun:
        """`pause_at` is a failpoint (`name` or `name@N`) where the child stops and waits;
        `failpoints` a full spec (see mongo_backup.engine.failpoints) for other actions."""
        marker_dir = Path(tempfile.mkdtemp(prefix="failpoint-"))
        child_env = {**os.environ, **(env or {}), DIR_ENV: str(marker_dir)}
        spec = ";".join(filter(None, [f"{pause_at}=pause" if pause_at else None, failpoints]))
        if spec:
            child_env[ENV] = spec
        proc = subprocess.Popen(
            [sys.executable, "-m", "mongo_backup.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        return cls(proc, marker_dir, pause_at)

    def wait_paused(self, timeout: float = 120) -> None:
        """Until the child has reached its failpoint; fails if it exits first."""
        assert self.pause_at, "started without pause_at"
        marker = self.marker_dir / self.pause_at
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(
                    f"the run exited ({self.proc.returncode}) before failpoint {self.pause_at}: {err or out}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"failpoint {self.pause_at} not reached within {timeout:.0f} s")
            time.sleep(0.05)

    def resume(self) -> None:
        """Let a paused child go on (it waits for its marker file to disappear)."""
        assert self.pause_at, "started without pause_at"
        (self.marker_dir / self.pause_at).unlink()

    def kill(self) -> CliResult:
        """SIGKILL: the process dies on the spot."""
        self.proc.send_signal(signal.SIGKILL)
        return self.finish()

    def interrupt(self, timeout: float = 120) -> CliResult:
        """SIGINT, as Ctrl-C: the run stops and cleans up what it wrote."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish(timeout)

    def terminate(self, timeout: float = 120) -> CliResult:
        self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def finish(self, timeout: float = 300) -> CliResult:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"the run did not end within {timeout:.0f} s: {err}") from None
        finally:
            shutil.rmtree(self.marker_dir, ignore_errors=True)  # the run is over: no marker matters
        return CliResult(self.proc.returncode, out, err)


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    cwd: str | os.PathLike[str] | None = None,
) -> CliResult:
    """Run `mongo-backup ARGS` to its end (in `cwd`: relative paths are relative to it)."""
    done = subprocess.run(
        [sys.executable, "-m", "mongo_backup.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@contextmanager
def cli_run(args: Sequence[str], **options: Any) -> Iterator[CliRun]:
    """A CLI run that never outlives its test, even a failed one (a paused child waits forever)."""
    run = CliRun.start(args, **options)
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            run.kill()
        shutil.rmtree(run.marker_dir, ignore_errors=True)


def one_line_error(done: CliResult) -> str:
    """The CLI's error: exactly one line on stderr, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mongo-backup "), done.stderr
    return lines[0]
