"""Run ``bootc-embed`` with faults injected from outside: SIGKILL or a pause at a chosen call.

No hook exists in the production code. This file is also a script: ``python faultrun.py ARGS``
replaces a few standard-library functions the build calls (``os.replace``, ``os.rename``,
``os.link``, ``tempfile.mkdtemp``, ``tempfile.mkstemp``) with wrappers, then runs the
``bootc-embed`` command line with ARGS. The rules come from ``$BOOTC_EMBED_FAULT_HOOKS`` (JSON):

- ``log``: a file that gets one JSON line per wrapped call (``op``, ``desc``, ``thread``),
  written before the call (unbuffered: it survives a SIGKILL);
- ``control``: a directory for pauses: the paused process writes ``paused`` (the call's
  description) and waits until ``resume`` exists;
- ``rules``: :class:`Hook` objects: the ``nth`` call of ``op`` whose description matches the
  regex ``match`` is killed (SIGKILL to itself) or paused, ``before`` or ``after`` the real call.

Descriptions: ``SRC -> DST`` for replace, rename and link; ``DIR/PREFIX`` for mkdtemp and
mkstemp. Calls are counted under one lock, so with ``--jobs 1`` (every layer in the main
thread) the Nth call is the same call in every run. A pause in the main thread ends with the
KeyboardInterrupt a SIGINT raises there; a pause elsewhere ends at ``resume``.

This is what ``strace -f -e inject=rename:signal=KILL:when=N`` would do, without strace's
per-thread counting and with the rename chosen by path rather than by number.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV = "BOOTC_EMBED_FAULT_HOOKS"
OPS = ("replace", "rename", "link", "mkdtemp", "mkstemp")


@dataclass(frozen=True)
class Hook:
    op: str
    match: str = ""
    nth: int = 1
    when: str = "before"  # "before" or "after" the real call
    do: str = "kill"  # "kill" or "pause"

    def __post_init__(self) -> None:
        assert self.op in OPS, self.op
        assert self.when in ("before", "after"), self.when
        assert self.do in ("kill", "pause"), self.do


# --------------------------------------------------------------------------------------------
# the test side


@dataclass
class Sandbox:
    """Private places for one build: ``out`` (the output's parent), ``tmp`` ($TMPDIR),
    ``spool`` (--tmpdir), ``cache`` ($XDG_CACHE_HOME; the layer cache is ``cache/bootc-embed``)
    and ``home``."""

    root: Path

    def __post_init__(self) -> None:
        for d in (self.out, self.tmp, self.spool, self.cache, self.home):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def roots(self) -> list[Path]:
        """Where a build may leave something: the output's parent, $TMPDIR, --tmpdir, cache."""
        return [self.out, self.tmp, self.spool, self.cache]

    def env(self, **extra: str) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "COLUMNS")}
        e.update(
            TMPDIR=str(self.tmp),
            XDG_CACHE_HOME=str(self.cache),
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.home / "run"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            BOOTC_EMBED_REGISTRY_BACKOFF="0.02",
        )
        e.update(extra)
        return e


@dataclass
class Outcome:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout ---\n"
            f"{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


class Build:
    """One ``bootc-embed`` process under :class:`Hook` rules, its output kept in files."""

    def __init__(
        self,
        box: Sandbox,
        args: Sequence[str | os.PathLike[str]],
        hooks: Sequence[Hook] = (),
        env: dict[str, str] | None = None,
        name: str = "build",
        umask: int = 0o022,
    ) -> None:
        self.box = box
        self.umask = umask
        self.work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=box.root))
        self.control = self.work / "control"
        self.control.mkdir()
        self.log = self.work / "calls.jsonl"
        spec = {
            "log": str(self.log),
            "control": str(self.control),
            "rules": [asdict(h) for h in hooks],
        }
        self.argv = [sys.executable, __file__, *(os.fspath(a) for a in args)]
        self.env = {**box.env(), **(env or {}), ENV: json.dumps(spec)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Build:
        self._out = open(self.work / "stdout", "wb")  # noqa: SIM115 - closed in wait()
        self._err = open(self.work / "stderr", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=self.env,
            umask=self.umask,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_paused(self, timeout: float = 180) -> str:
        """Wait until the process pauses at a hook; the paused call's description."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        paused = self.control / "paused"
        while time.monotonic() < deadline:
            if paused.exists():
                return paused.read_text()
            if self.proc.poll() is not None:
                raise AssertionError(f"the build ended before pausing:\n{self.finish().describe()}")
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError(f"the build did not pause within {timeout} s")

    def wait_for(self, predicate: object, timeout: float = 180, what: str = "") -> None:
        assert self.proc is not None and callable(predicate)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the build ended before {what}:\n{self.finish().describe()}")
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError(f"the build did not reach {what} within {timeout} s")

    def resume(self) -> None:
        (self.control / "resume").write_text("")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 300) -> Outcome:
        """Wait for the process (SIGKILL and a failure after ``timeout`` s)."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{' '.join(self.argv)} did not end within {timeout} s") from None
        self._out.close()
        self._err.close()
        return Outcome(
            self.argv,
            rc,
            (self.work / "stdout").read_text(errors="replace"),
            (self.work / "stderr").read_text(errors="replace"),
            self.calls(),
        )

    def calls(self) -> list[dict[str, str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def run(self, timeout: float = 300) -> Outcome:
        return self.start().finish(timeout)


# --------------------------------------------------------------------------------------------
# the script side


def _describe(op: str, args: tuple[object, ...], kwargs: dict[str, object]) -> str:
    if op in ("replace", "rename", "link"):
        src = args[0] if args else kwargs.get("src")
        dst = args[1] if len(args) > 1 else kwargs.get("dst")
        return f"{os.fspath(src)} -> {os.fspath(dst)}"  # type: ignore[arg-type]
    names = ("suffix", "prefix", "dir")
    given = dict(zip(names, args, strict=False)) | kwargs
    d = given.get("dir") or tempfile.gettempdir()
    return f"{os.fspath(d)}/{given.get('prefix') or 'tmp'}"  # type: ignore[arg-type]


def _install(spec: dict[str, object]) -> None:
    log_fd = os.open(str(spec["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    control = Path(str(spec["control"]))
    rules = [(Hook(**r), [0]) for r in spec.get("rules", [])]  # type: ignore[union-attr]
    lock = threading.Lock()
    originals = {
        "replace": os.replace,
        "rename": os.rename,
        "link": os.link,
        "mkdtemp": tempfile.mkdtemp,
        "mkstemp": tempfile.mkstemp,
    }
    real_replace = originals["replace"]

    def act(hook: Hook, desc: str) -> None:
        if hook.do == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        (control / "paused.tmp").write_text(desc)
        real_replace(control / "paused.tmp", control / "paused")
        resume = control / "resume"
        deadline = time.monotonic() + 600
        while not resume.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def wrap(op: str):  # type: ignore[no-untyped-def]
        real = originals[op]

        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            desc = _describe(op, args, kwargs)
            due: list[Hook] = []
            with lock:
                line = {"op": op, "desc": desc, "thread": threading.current_thread().name}
                os.write(log_fd, (json.dumps(line) + "\n").encode())
                for hook, count in rules:
                    if hook.op == op and re.search(hook.match, desc):
                        count[0] += 1
                        if count[0] == hook.nth:
                            due.append(hook)
            for hook in due:
                if hook.when == "before":
                    act(hook, desc)
            result = real(*args, **kwargs)
            for hook in due:
                if hook.when == "after":
                    act(hook, desc)
            return result

        return wrapper

    os.replace = wrap("replace")
    os.rename = wrap("rename")
    os.link = wrap("link")
    tempfile.mkdtemp = wrap("mkdtemp")
    tempfile.mkstemp = wrap("mkstemp")


def main() -> None:
    spec = os.environ.get(ENV)
    if spec:
        _install(json.loads(spec))
    from bootc_embed.cli import main as cli

    sys.argv = ["bootc-embed", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
