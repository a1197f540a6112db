"""Real consumers for the tests: podman with private stores, skopeo, a loopback registry, mounts.

Every podman/buildah/skopeo invocation goes through :func:`run` so that a failure shows the command,
its exit status and the tail of its output. Nothing here touches the machine's default store: each
:class:`Podman` has its own ``--root``/``--runroot`` and the session's ``CONTAINERS_STORAGE_CONF``
points at a private store too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = TESTS_DIR / "containers.conf"

REQUIRED_TOOLS = (
    "podman",
    "buildah",
    "skopeo",
    "docker-registry",
    "debootstrap",
    "tar",
    "gzip",
    "mount",
    "umount",
    "getfattr",
)


class CommandError(AssertionError):
    pass


def _tail(text: str | bytes | None, n: int = 3000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= n else "...\n" + text[-n:]


def run(
    cmd: Sequence[str | os.PathLike],
    *,
    check: bool = True,
    timeout: float = 900,
    env: dict | None = None,
    input: bytes | None = None,
    cwd: str | os.PathLike | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run a command, capturing output; on failure raise with the command and its output."""
    argv = [os.fspath(c) for c in cmd]
    try:
        p = subprocess.run(
            argv,
            capture_output=True,
            timeout=timeout,
            env=env,
            input=input if not text or input is None else input.decode(),
            cwd=cwd,
            text=text,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise CommandError(
            f"timed out after {timeout}s: {' '.join(argv)}\n"
            f"stdout: {_tail(e.stdout)}\nstderr: {_tail(e.stderr)}"
        ) from None
    if check and p.returncode != 0:
        raise CommandError(
            f"command failed (exit {p.returncode}): {' '.join(argv)}\n"
            f"--- stdout ---\n{_tail(p.stdout)}\n--- stderr ---\n{_tail(p.stderr)}"
        )
    return p


def check_environment() -> None:
    """Fail loudly (never skip) when the suite cannot run real consumers here."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the consumer tests must run as root (mounts, podman overlay storage)")
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"missing tool: {tool} (run .ci/run, which installs it)")
    if problems:
        raise RuntimeError("cannot run the consumer tests:\n  " + "\n  ".join(problems))


def write_storage_conf(path: Path, graphroot: Path, runroot: Path) -> Path:
    """A storage.conf whose defaults are private: a podman call that forgets --root stays here."""
    path.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{graphroot}"\nrunroot = "{runroot}"\n'
    )
    return path


def container_env(storage_conf: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    env["CONTAINERS_STORAGE_CONF"] = str(storage_conf)
    env.setdefault("TMPDIR", "/var/tmp")
    return env


# --------------------------------------------------------------------------------------------
# mounts


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                found.append(mp)
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def unmount_all_under(path: Path) -> None:
    for _ in range(5):
        mps = mounts_under(path)
        if not mps:
            return
        for mp in mps:
            subprocess.run(["umount", mp], capture_output=True)
        for mp in mounts_under(path):
            subprocess.run(["umount", "-l", mp], capture_output=True)


def remove_tree(path: Path) -> None:
    """Unmount everything below ``path``, then delete it."""
    path = Path(path)
    if not path.exists():
        return
    unmount_all_under(path)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        # immutable/odd modes: last resort
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only_bind(path: Path):
    """``mount --bind X X; mount -o remount,ro,bind X`` for the duration of the block."""
    run(["mount", "--bind", path, path])
    try:
        run(["mount", "-o", "remount,ro,bind", path])
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)
        if os.path.realpath(path) in mounts_under(path):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --------------------------------------------------------------------------------------------
# podman

# podman refuses a --runroot longer than 50 characters: keep run roots here, named <pid>-<n>.
RUNROOT_BASE = Path("/var/tmp/bootc-embed-run")
_runroot_counter = itertools.count()


def short_runroot() -> Path:
    RUNROOT_BASE.mkdir(parents=True, exist_ok=True)
    while True:
        p = RUNROOT_BASE / f"{os.getpid()}-{next(_runroot_counter)}"
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue


def clean_stale_runroots() -> None:
    """Remove run roots of sessions that are gone (a killed test run leaves them behind)."""
    if not RUNROOT_BASE.exists():
        return
    for d in RUNROOT_BASE.iterdir():
        pid_s = d.name.split("-", 1)[0]
        if pid_s.isdigit() and not pid_alive(int(pid_s)):
            remove_tree(d)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Podman:
    """podman (and skopeo) on a private store, optionally with an additional image store."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        additional_store: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.runroot = short_runroot()
        self.tmpdir = self.runroot / "libpod"
        self.env = env
        self.additional_store = Path(additional_store) if additional_store else None
        self.root.mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)

    def argv(self, *args: str | os.PathLike) -> list[str]:
        cmd = [
            "podman",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            # libpod's state (default /run/libpod, shared by every podman of the machine):
            # `system reset` in destroy() deletes it, under the feet of podman calls running
            # at the same time, unless each store has its own
            "--tmpdir",
            str(self.tmpdir),
            "--storage-driver",
            "overlay",
        ]
        if self.additional_store is not None:
            cmd += ["--storage-opt", f"additionalimagestore={self.additional_store}"]
        return cmd + [os.fspath(a) for a in args]

    def __call__(self, *args: str | os.PathLike, check: bool = True, timeout: float = 900):
        return run(self.argv(*args), check=check, timeout=timeout, env=self.env)

    def json(self, *args: str) -> object:
        return json.loads(self(*args).stdout or "null")

    def storage_ref(self, name: str) -> str:
        """A containers-storage reference for skopeo that sees this podman's stores."""
        spec = f"overlay@{self.root}+{self.runroot}"
        if self.additional_store is not None:
            spec += f":overlay.imagestore={self.additional_store}"
        return f"containers-storage:[{spec}]{name}"

    def skopeo_copy(self, src: str, dst: str, *extra: str, timeout: float = 900):
        return run(["skopeo", "copy", "-q", *extra, src, dst], timeout=timeout, env=self.env)

    def image_names(self) -> set[str]:
        out = self.json("images", "--format", "json") or []
        names: set[str] = set()
        for img in out:  # type: ignore[union-attr]
            names.update(img.get("Names") or [])
        return names

    def destroy(self) -> None:
        """Unmount and delete everything this podman created (never the additional store)."""
        own_store_only = Podman.__new__(Podman)
        own_store_only.__dict__.update(self.__dict__, additional_store=None)
        for args in (("image", "unmount", "--all", "--force"), ("system", "reset", "--force")):
            subprocess.run(
                self.argv(*args) if args[0] == "image" else own_store_only.argv(*args),
                capture_output=True,
                env=self.env,
                timeout=300,
                stdin=subprocess.DEVNULL,
            )
        remove_tree(self.root)
        remove_tree(self.runroot)


# --------------------------------------------------------------------------------------------
# registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A distribution registry (``docker-registry serve``) on loopback, plain HTTP."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = Path(workdir)
        self.env = env
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        last_err = ""
        for _attempt in range(5):
            self.port = free_port()
            cfg = self.workdir / "config.yml"
            cfg.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: 127.0.0.1:{self.port}\n"
            )
            log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
                        if r.status == 200:
                            return self
                except (urllib.error.URLError, OSError) as e:
                    last_err = str(e)
                time.sleep(0.2)
            self.stop()
        log_text = (self.workdir / "registry.log").read_text(errors="replace")
        raise RuntimeError(f"docker-registry did not start: {last_err}\n{_tail(log_text)}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None

    def push_layout(self, oci_ref: str, repo_tag: str) -> str:
        """Copy an OCI layout image into the registry unchanged; return the full image name."""
        name = f"{self.host}/{repo_tag}"
        run(
            [
                "skopeo",
                "copy",
                "-q",
                "--preserve-digests",
                "--dest-tls-verify=false",
                oci_ref,
                f"docker://{name}",
            ],
            env=self.env,
        )
        return name

    def manifest_digest(self, name: str) -> str:
        out = run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
            env=self.env,
            text=False,
        ).stdout
        import hashlib

        return "sha256:" + hashlib.sha256(out).hexdigest()


# --------------------------------------------------------------------------------------------
# unpacking layers the way a plain filesystem consumer does


def unpack_layers(blobs: Sequence[Path], dest: Path) -> list[str]:
    """Extract layer blobs in order with GNU tar (xattrs included); return their diff_ids.

    ``tar --xattrs --xattrs-include='*' --numeric-owner -xpf -``, fed the decompressed stream.
    """
    import hashlib

    from .ocilayout import decompressed_stream

    diff_ids = []
    for blob in blobs:
        h = hashlib.sha256()
        proc = subprocess.Popen(
            [
                "tar",
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "--warning=no-timestamp",
                "-xpf",
                "-",
                "-C",
                str(dest),
            ],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        try:
            for chunk in decompressed_stream(blob):
                h.update(chunk)
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
        if rc != 0 or err.strip():
            raise CommandError(f"GNU tar failed on layer {blob.name} (exit {rc}):\n{_tail(err)}")
        diff_ids.append("sha256:" + h.hexdigest())
    return diff_ids
