"""The CI recipes users copy (recipes/): valid for their CI system, and their steps work.

Schemas: check-jsonschema's bundled GitHub workflow and GitLab CI schemas (vendored in its
wheel: no network), and for the Tekton Task (check-jsonschema bundles none) the hand-written
tests/data/tekton-task-v1.schema.json, plus the references Tekton resolves when a Task is applied.

Steps: each recipe's shell steps are taken from its YAML and run here, as its CI system would run
them, in order, with the values a project would set pointing at this machine: the OS image goes
to a loopback registry with htpasswd auth (logged into the way the recipe does it), the apps come
from the session's loopback registry, ``podman build`` builds a small OS Containerfile on the test
base in a private store, and bootc-embed is pip-installed by the recipe from a local wheelhouse.
Steps that call a marketplace action (``uses:``) are skipped; a Tekton step whose image is
bootc-embed's runs in the image built from the repository's Containerfile, the others run here.
Expressions the CI system fills in (``${{ ... }}``, ``$(params.x)``) are only allowed in the
places that hand values to the shell (``env:``, ``variables:``), never in the scripts themselves,
so the scripts run here are the recipes' own text.

Each recipe runs three times against its own repository: the first run finds no previous image
and pushes; the second (one app replaced) builds with ``--previous``, checks the download budget
and pushes; the third (over a 1-byte budget) fails at the check and pushes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from registry_support import Registry as AuthRegistry
from registry_support import htpasswd
from ruamel.yaml import YAML
from support import containers
from support.containers import Podman, run
from support.toolimage import REPO

RECIPES = REPO / "recipes"
TEKTON_SCHEMA = Path(__file__).parent / "data" / "tekton-task-v1.schema.json"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
USER, PASSWORD = "ci-bot", "ci-secret-pw"
BASE = "localhost/bootc-embed-test/base:1"
OS_CONTAINERFILE = f"FROM {BASE}\nCOPY motd /etc/motd\n"
STEP_TIMEOUT = 900


def load_yaml(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


# --------------------------------------------------------------------------------------------
# schemas


SCHEMA_ARGS = {
    "github-actions.yml": ["--builtin-schema", "vendor.github-workflows"],
    "gitlab-ci.yml": ["--builtin-schema", "vendor.gitlab-ci"],
    "tekton-task.yaml": ["--schemafile", str(TEKTON_SCHEMA)],
}


def check_schema(recipe: Path, args: list[str]) -> subprocess.CompletedProcess:
    # no network: the bundled schemas are files of the check-jsonschema wheel
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    return run([CHECK_JSONSCHEMA, *args, recipe], check=False, env=env)


def test_every_recipe_is_checked():
    assert sorted(p.name for p in RECIPES.iterdir()) == sorted(SCHEMA_ARGS)


@pytest.mark.parametrize("name", sorted(SCHEMA_ARGS))
def test_recipe_matches_its_schema(name):
    res = check_schema(RECIPES / name, SCHEMA_ARGS[name])
    assert res.returncode == 0, res.stdout + res.stderr


BREAKAGES = {
    # a misspelt key and a wrong type, which each CI system refuses
    "github-actions.yml": [("runs-on: ubuntu-24.04", "run-on: ubuntu-24.04")],
    "gitlab-ci.yml": [("  timeout: 1h", "  timeout: [1h]"), ("  script:", "  scripts:")],
    "tekton-task.yaml": [
        ("    - name: build-os", "    - name: Build_OS"),
        ("script: |", "scrpt: |"),
    ],
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_schemas_reject_broken_recipes(name, tmp_path):
    """The schema checks can fail: each breakage alone is reported."""
    text = (RECIPES / name).read_text()
    for old, new in BREAKAGES[name]:
        assert old in text, old
        broken = tmp_path / name
        broken.write_text(text.replace(old, new, 1))
        res = check_schema(broken, SCHEMA_ARGS[name])
        assert res.returncode == 1, f"{old!r} -> {new!r} accepted:\n{res.stdout}{res.stderr}"


TEKTON_REF = re.compile(r"\$\((params|workspaces|results|context|steps|tasks)\.([^)]*)\)")


def test_tekton_references_are_declared():
    """What Tekton checks when the Task is applied: every $(params.x), $(workspaces.x.path|bound)
    and $(results.x.path) names something the Task declares."""
    task = load_yaml(RECIPES / "tekton-task.yaml")["spec"]
    params = {p["name"] for p in task["params"]}
    workspaces = {w["name"] for w in task["workspaces"]}
    results = {r["name"] for r in task["results"]}
    found = TEKTON_REF.findall((RECIPES / "tekton-task.yaml").read_text())
    assert found
    for kind, rest in found:
        if kind == "params":
            assert rest in params, rest
        elif kind == "workspaces":
            ws, _, attr = rest.partition(".")
            assert ws in workspaces and attr in ("path", "bound"), rest
        elif kind == "results":
            res, _, attr = rest.partition(".")
            assert res in results and attr == "path", rest
        else:
            pytest.fail(f"unexpected reference $({kind}.{rest})")


# --------------------------------------------------------------------------------------------
# a CI machine of our own


@dataclass
class Outcome:
    ok: bool
    log: str
    failed_step: str | None = None
    results: dict[str, str] = field(default_factory=dict)


class CIMachine:
    """What the recipes' steps find here: podman, skopeo, python3, registries, credentials."""

    def __init__(self, work: Path, container_env, test_images, registry, wheelhouse) -> None:
        self.work = work
        self.apps = registry
        self.podman = Podman(work / "store", container_env)
        users = htpasswd(work / "htpasswd", {USER: PASSWORD})
        self.os_registry = AuthRegistry(work / "os-registry", htpasswd=users).start()
        try:
            self._setup(container_env, test_images, registry, wheelhouse)
        except BaseException:
            self.close()
            raise

    def _setup(self, container_env, test_images, registry, wheelhouse) -> None:
        work = self.work
        storage_conf = containers.write_storage_conf(
            work / "storage.conf", self.podman.root, self.podman.runroot
        )
        # both registries are plain HTTP: marked insecure in the user's registries.conf, which
        # podman, skopeo 1.9 (it reads no CONTAINERS_REGISTRIES_CONF) and bootc-embed all read
        self.regconf = work / "home" / ".config" / "containers" / "registries.conf"
        self.regconf.parent.mkdir(parents=True)
        self.regconf.write_text(
            "".join(
                f'[[registry]]\nlocation = "{host}"\ninsecure = true\n'
                for host in (self.os_registry.host, registry.registry.host)
            )
        )
        # python3 for the recipes' venvs: this interpreter (the wheelhouse has its wheels)
        pybin = work / "python-bin"
        pybin.mkdir()
        (pybin / "python3").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
        ours = str(Path(sys.executable).parent)
        path = [str(pybin), *(p for p in os.environ["PATH"].split(":") if p != ours)]
        # the tests' containers.conf, with the libpod state of this store (Podman.tmpdir)
        conf = tomllib.loads(containers.CONTAINERS_CONF.read_text())
        conf.setdefault("engine", {})["tmp_dir"] = str(self.podman.tmpdir)
        containers_conf = work / "containers.conf"
        containers_conf.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in opts.items())
                for section, opts in conf.items()
            )
        )
        self.env = {
            **container_env,
            "CONTAINERS_CONF": str(containers_conf),
            "CONTAINERS_STORAGE_CONF": str(storage_conf),
            # a private home: logins land in $XDG_RUNTIME_DIR/containers/auth.json, where podman,
            # skopeo and bootc-embed look by default
            "HOME": str(work / "home"),
            "XDG_RUNTIME_DIR": str(work / "run"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "PATH": ":".join(path),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(wheelhouse),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "CI": "true",
        }
        for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME", "VIRTUAL_ENV"):
            self.env.pop(var, None)
        for d in ("home", "run", "cache"):
            (work / d).mkdir(mode=0o700, exist_ok=True)
        # the OS image's base, as a bootc base pulled earlier
        self.podman.skopeo_copy(test_images.ref("base"), self.podman.storage_ref(BASE))

    def project(self, name: str) -> Path:
        """A checkout holding the OS image's Containerfile."""
        d = self.work / name
        d.mkdir()
        (d / "Containerfile").write_text(OS_CONTAINERFILE)
        (d / "motd").write_text(f"built by the {name} recipe\n")
        return d

    def write_script(self, name: str, script: str) -> Path:
        path = self.work / "scripts" / f"{name}.sh"
        path.parent.mkdir(exist_ok=True)
        path.write_text(script)
        return path

    def run_step(self, argv: list[str], env: dict[str, str], cwd: Path | None) -> tuple[int, str]:
        """Exit status and output (stdout and stderr together, with the time it took)."""
        t0 = time.monotonic()
        try:
            p = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                timeout=STEP_TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            return 124, f"timed out after {STEP_TIMEOUT} s\n{e.stdout or ''}"
        return p.returncode, f"[{time.monotonic() - t0:.1f} s]\n{p.stdout}"

    def run_script(
        self, argv: list[str], script: str, env: dict[str, str], cwd: Path, name: str
    ) -> tuple[int, str]:
        return self.run_step([*argv, str(self.write_script(name, script))], env, cwd)

    def manifest_digest(self, ref: str) -> str | None:
        p = run(
            ["skopeo", "inspect", "--raw", "--creds", f"{USER}:{PASSWORD}", f"docker://{ref}"],
            check=False,
            env=self.env,
            text=False,
        )
        if p.returncode != 0:
            return None
        return "sha256:" + hashlib.sha256(p.stdout).hexdigest()

    def close(self) -> None:
        self.os_registry.stop()
        self.podman.destroy()


@pytest.fixture(scope="module")
def ci(session_dir, container_env, test_images, registry, wheelhouse):
    work = session_dir / "ci-recipes"
    work.mkdir()
    machine = CIMachine(work, container_env, test_images, registry, wheelhouse)
    try:
        yield machine
    finally:
        machine.close()


def no_expression(script: str, pattern: str, where: str) -> None:
    assert not re.search(pattern, script), f"{where}: CI expression inside the script"


# --------------------------------------------------------------------------------------------
# GitHub Actions


def run_github(ci: CIMachine, cwd: Path, values: dict[str, str], n: int) -> Outcome:
    wf = load_yaml(RECIPES / "github-actions.yml")
    (job,) = wf["jobs"].values()
    given = {
        "OS_IMAGE": values["repo"],
        "OS_TAG": values["tag"],
        "APP_IMAGES": values["apps"],
        "MAX_BYTES": values["max_bytes"],
        "VERSION_TAG": values["version"],
        "REGISTRY_USER": USER,
        "REGISTRY_PASSWORD": PASSWORD,
    }

    def expand(env_map: dict | None) -> dict[str, str]:
        out = {}
        for k, v in (env_map or {}).items():
            v = str(v)
            if k in given:
                out[k] = given[k]
            else:
                assert "${{" not in v, f"env {k}: {v} needs a value from the test"
                out[k] = v
        return out

    temp = ci.work / f"github-runner-temp-{n}"
    temp.mkdir()
    # the files through which steps talk to the runner
    files = {
        k: temp.parent / f"github-{k.lower()}-{n}"
        for k in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
    }
    for f in files.values():
        f.write_text("")
    env = {
        **ci.env,
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(cwd),
        "RUNNER_TEMP": str(temp),
        **{k: str(v) for k, v in files.items()},
        **expand(wf.get("env")),
        **expand(job.get("env")),
    }
    shell = (job.get("defaults") or wf.get("defaults") or {}).get("run", {}).get("shell")
    log = []
    for i, step in enumerate(job["steps"]):
        name = step.get("name") or step.get("uses") or f"step {i}"
        assert "if" not in step, f"{name}: conditions are not emulated here"
        if "uses" in step:
            log.append(f"--- {name}: skipped (action)")
            continue
        script = step["run"]
        no_expression(script, r"\$\{\{", name)
        argv = {
            "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"],
            None: ["bash", "-e"],
        }[step.get("shell", shell)]
        step_env = {**env, **expand(step.get("env"))}
        rc, out = ci.run_script(argv, script, step_env, cwd, f"github-{n}-{i}")
        log.append(f"--- {name} (exit {rc})\n{out}")
        if rc != 0:
            return Outcome(False, "\n".join(log), name)
        # what the runner does between steps
        for line in files["GITHUB_ENV"].read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
        for line in reversed(files["GITHUB_PATH"].read_text().splitlines()):
            if line not in env["PATH"].split(":"):
                env["PATH"] = f"{line}:{env['PATH']}"
    return Outcome(True, "\n".join(log))


# --------------------------------------------------------------------------------------------
# GitLab CI


def gitlab_expand(value: str, env: dict[str, str]) -> str:
    """GitLab expands $VAR and ${VAR} in variables' values."""
    return re.sub(
        r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), str(value)
    )


def run_gitlab(ci: CIMachine, cwd: Path, values: dict[str, str], n: int) -> Outcome:
    doc = load_yaml(RECIPES / "gitlab-ci.yml")
    (job,) = (v for k, v in doc.items() if isinstance(v, dict) and "script" in v)
    host = values["repo"].split("/")[0]
    env = {
        **ci.env,
        "GITLAB_CI": "true",
        "CI_PROJECT_DIR": str(cwd),
        "CI_REGISTRY": host,
        "CI_REGISTRY_IMAGE": values["repo"].removesuffix("/os"),
        "CI_REGISTRY_USER": USER,
        "CI_REGISTRY_PASSWORD": PASSWORD,
        "CI_COMMIT_SHORT_SHA": values["version"],
        "CI_COMMIT_BRANCH": "main",
        "CI_DEFAULT_BRANCH": "main",
    }
    # the project's CI/CD variables win over the file's
    project_vars = {"APP_IMAGES": values["apps"], "MAX_BYTES": values["max_bytes"]}
    for k, v in {**doc.get("variables", {}), **job.get("variables", {})}.items():
        env[k] = project_vars.get(k) or gitlab_expand(v, env)
    assert env["OS_IMAGE"] == values["repo"] and env["OS_TAG"] == values["tag"]
    lines = [*job.get("before_script", []), *job["script"]]
    for line in lines:
        no_expression(line, r"\$\[\[|\{\{", "gitlab script")
    rc, out = ci.run_script(
        ["bash", "-eo", "pipefail"], "\n".join(lines) + "\n", env, cwd, f"gitlab-{n}"
    )
    return Outcome(rc == 0, f"--- job (exit {rc})\n{out}", None if rc == 0 else "job")


# --------------------------------------------------------------------------------------------
# Tekton


def run_tekton(ci: CIMachine, cwd: Path, values: dict[str, str], n: int, tool_image) -> Outcome:
    task = load_yaml(RECIPES / "tekton-task.yaml")["spec"]
    given = {
        "os-image": values["repo"],
        "os-tag": values["tag"],
        "version-tag": values["version"],
        "app-images": values["apps"],
        "max-bytes": values["max_bytes"],
        "bootc-embed-image": tool_image.name,
    }
    params = {}
    for p in task["params"]:
        assert p["name"] in given or "default" in p, f"param {p['name']} has no value"
        params[p["name"]] = given.get(p["name"], p.get("default"))
    # the dockerconfig workspace: what a docker-registry Secret's config.json holds
    dockerconfig = ci.work / f"tekton-dockerconfig-{n}"
    dockerconfig.mkdir()
    run(
        ["podman", "login", "--authfile", dockerconfig / "config.json", "-u", USER,
         "--password-stdin", values["repo"].split("/")[0]],
        env=ci.env,
        input=PASSWORD.encode(),
    )  # fmt: skip
    results_dir = ci.work / f"tekton-results-{n}"
    results_dir.mkdir()
    workspaces = {"source": cwd, "dockerconfig": dockerconfig}

    def subst(text: str) -> str:
        def one(m: re.Match) -> str:
            kind, rest = m.group(1), m.group(2)
            if kind == "params":
                return str(params[rest])
            if kind == "workspaces":
                ws, _, attr = rest.partition(".")
                return str(workspaces[ws]) if attr == "path" else "true"
            name, _, _ = rest.partition(".")
            return str(results_dir / name)

        return TEKTON_REF.sub(one, text)

    log = []
    for step in task["steps"]:
        name = step["name"]
        script = step["script"]
        no_expression(script, TEKTON_REF.pattern, name)
        assert script.startswith("#!/usr/bin/env bash\n"), f"{name}: run here with bash"
        env = {e["name"]: subst(e["value"]) for e in step.get("env", [])}
        workdir = Path(subst(step.get("workingDir", str(cwd))))
        if subst(step["image"]) == tool_image.name:
            # in bootc-embed's image: the workspaces at the same paths, the loopback registries
            path = ci.write_script(f"tekton-{n}-{name}", script)
            argv = [
                *tool_image.podman.argv("run", "--rm", "--network", "host"),
                "-v", f"{cwd}:{cwd}",
                "-v", f"{dockerconfig}:{dockerconfig}:ro",
                "-v", f"{path.parent}:{path.parent}:ro",
                "-v", f"{ci.regconf}:/root/.config/containers/registries.conf:ro",
                *(a for k, v in env.items() for a in ("-e", f"{k}={v}")),
                "-w", str(workdir),
                "--entrypoint", "bash",
                tool_image.name,
                str(path),
            ]  # fmt: skip
            rc, out = ci.run_step(argv, tool_image.podman.env, None)
        else:
            rc, out = ci.run_script(
                ["bash"], script, {**ci.env, **env}, workdir, f"tekton-{n}-{name}"
            )
        log.append(f"--- step {name} (exit {rc})\n{out}")
        if rc != 0:
            return Outcome(False, "\n".join(log), name)
    results = {p.name: p.read_text() for p in results_dir.iterdir()}
    return Outcome(True, "\n".join(log), results=results)


# --------------------------------------------------------------------------------------------
# the three runs


RECIPE_STEP_CHECKING_BUDGET = {
    "github": "Check the image and what hosts download",
    "gitlab": "job",
    "tekton": "embed",
}


@pytest.mark.parametrize("recipe", ["github", "gitlab", "tekton"])
def test_recipe_runs(recipe, ci, request):
    runner = {"github": run_github, "gitlab": run_gitlab}.get(recipe)
    if runner is None:
        tool_image = request.getfixturevalue("tool_image")

        def runner(ci, cwd, values, n):
            return run_tekton(ci, cwd, values, n, tool_image)

    cwd = ci.project(recipe)
    repo = f"{ci.os_registry.host}/recipes/{recipe}/os"
    apps = ci.apps
    base_values = {"repo": repo, "tag": "latest", "max_bytes": "524288000"}

    def describe(out: Outcome) -> str:
        return textwrap.indent(out.log[-12000:], "  ")

    # 1: no previous image yet
    first = runner(
        ci, cwd, {**base_values, "version": "v1", "apps": f"{apps['app1']} {apps['app3']}"}, 1
    )
    assert first.ok, describe(first)
    assert "building without --previous" in first.log, describe(first)
    d1 = ci.manifest_digest(f"{repo}:latest")
    assert d1 is not None and d1 == ci.manifest_digest(f"{repo}:v1")
    if recipe == "tekton":
        assert first.results["IMAGE_DIGEST"] == d1
        assert first.results["IMAGE_URL"] == f"{repo}:latest"

    # 2: app3 replaced by app2: built on the previous image, the budget checked, pushed
    second = runner(
        ci, cwd, {**base_values, "version": "v2", "apps": f"{apps['app1']} {apps['app2']}"}, 2
    )
    assert second.ok, describe(second)
    assert f"previous image: {repo}:latest" in second.log, describe(second)
    # bootc-embed diff ran: its total row
    assert re.search(r"^\W*download\b", second.log, re.MULTILINE), describe(second)
    d2 = ci.manifest_digest(f"{repo}:latest")
    assert d2 not in (None, d1) and d2 == ci.manifest_digest(f"{repo}:v2")

    # 3: over a 1-byte budget: the check fails, nothing is pushed
    third = runner(
        ci,
        cwd,
        {
            **base_values,
            "version": "v3",
            "apps": f"{apps['app1']} {apps['app3']}",
            "max_bytes": "1",
        },
        3,
    )
    assert not third.ok, describe(third)
    assert third.failed_step == RECIPE_STEP_CHECKING_BUDGET[recipe], describe(third)
    assert "over the budget of 1" in third.log, describe(third)
    assert ci.manifest_digest(f"{repo}:latest") == d2
    assert ci.manifest_digest(f"{repo}:v3") is None
