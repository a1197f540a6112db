"""containers-registries.conf(5) for docker:// references: which files are read and how they
merge, prefix matching, and, against real registries on loopback, mirrors (with
pull-from-mirror and failures skipped), location rewrites, insecure and blocked registries.

A registry that must not answer is a closed port on 127.0.0.1; a registry that is not "on this
machine" for the client (no automatic plain HTTP) is reached as 0.0.0.0, which Linux sends to
loopback. What each registry was asked is read from its access log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_support import Registry, free_port, htpasswd, make_certs, skopeo_push
from test_registry import bootc_embed, failed, ok
from unit_support.auth import write_auth_json

from bootc_embed._demo import SampleImages, write_sample_images
from bootc_embed._reference import parse_reference
from bootc_embed._transports import TransportOptions
from bootc_embed._transports import _registries_conf as rc
from bootc_embed._transports.registry import RegistrySource
from bootc_embed.errors import ImageReferenceError, UsageError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def layout_digest(oci_ref: str) -> str:
    """The manifest digest of a sample layout (skopeo pushes it unchanged)."""
    index = json.loads((Path(oci_ref.split(":")[1]) / "index.json").read_text())
    return index["manifests"][0]["digest"]


# --------------------------------------------------------------------------------------------
# matching and pull locations (no network)


def test_prefixes_match_at_separators_the_longest_wins_and_wildcards_match_subdomains() -> None:
    assert rc.match_length("example.com/foo/app", "example.com/foo") == len("example.com/foo")
    assert rc.match_length("example.com/foobar/app", "example.com/foo") == -1
    assert rc.match_length("example.com/foo", "example.com/foo") == len("example.com/foo")
    assert rc.match_length("example.com:5000/app", "example.com:5000") == len("example.com:5000")
    assert rc.match_length("example.com:50001/app", "example.com:5000") == -1
    # wildcards: any depth of subdomain, with or without a port; never the domain itself
    for name in ("a.example.com/x", "a.b.example.com/x/y", "a.example.com:5000/x"):
        assert rc.match_length(name, "*.example.com") == len(name.split("/")[0].split(":")[0])
    for name in (
        "example.com/x",
        "evil-example.com/x",
        "a.example.com.evil/x",
        "b.org/a.example.com",
    ):
        assert rc.match_length(name, "*.example.com") == -1, name
    conf = rc.RegistriesConf(
        tuple(
            rc.RegistryEntry(prefix, prefix if "*" not in prefix else "")
            for prefix in sorted(
                ("example.com", "example.com/foo", "*.example.com", "xy.example.com")
            )
        )
    )
    chosen = {
        name: getattr(conf.find(name), "prefix", None)
        for name in (
            "example.com/foo/app",
            "example.com/bar",
            "a.example.com/b",
            "xy.example.com/b",
        )
    }
    assert chosen == {
        "example.com/foo/app": "example.com/foo",
        "example.com/bar": "example.com",
        "a.example.com/b": "*.example.com",
        "xy.example.com/b": "xy.example.com",
    }
    assert conf.find("other.org/bar") is None


def _endpoints(text: str, ref: str, tmp_path: Path) -> list[str]:
    conf = rc.load(str(write(tmp_path / "r.conf", text)), env={})
    return [
        ("insecure " if e.insecure else "") + e.describe() + (" BLOCKED" if e.blocked else "")
        for e in conf.pull_endpoints(parse_reference(ref))
    ]


def test_pull_locations_are_the_mirrors_that_apply_then_the_primary(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    text = """
[[registry]]
prefix = "example.com/team"
location = "primary.example.net/mirrored/team"
insecure = true

[[registry.mirror]]
location = "m1.example.net/team"

[[registry.mirror]]
location = "m2.example.net:5000/t"
insecure = true
pull-from-mirror = "digest-only"

[[registry.mirror]]
location = "m3.example.net/t"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "*.corp.example"
blocked = true

[[registry.mirror]]
location = "cache.example.net/corp"

[[registry]]
location = "digests.example"
mirror-by-digest-only = true

[[registry.mirror]]
location = "dm.example/x"
"""
    assert _endpoints(text, "docker://example.com/team/app:1", tmp_path) == [
        "mirror m1.example.net/team/app:1",
        "mirror m3.example.net/t/app:1",
        "insecure primary.example.net/mirrored/team/app:1",
    ]
    assert _endpoints(text, f"docker://example.com/team/app@{digest}", tmp_path) == [
        f"mirror m1.example.net/team/app@{digest}",
        f"insecure mirror m2.example.net:5000/t/app@{digest}",
        f"insecure primary.example.net/mirrored/team/app@{digest}",
    ]
    # a wildcard without location: names are used as they are; the mirror takes the rest
    assert _endpoints(text, "docker://a.b.corp.example/x/y:2", tmp_path) == [
        "mirror cache.example.net/corp/x/y:2",
        "a.b.corp.example/x/y:2 BLOCKED",
    ]
    assert _endpoints(text, "docker://digests.example/a:1", tmp_path) == ["digests.example/a:1"]
    assert _endpoints(text, f"docker://digests.example/a@{digest}", tmp_path) == [
        f"mirror dm.example/x/a@{digest}",
        f"digests.example/a@{digest}",
    ]
    assert _endpoints(text, "docker://elsewhere.example/a:1", tmp_path) == ["elsewhere.example/a:1"]
    # a location that makes no full image name is named with its file
    bad = '[[registry]]\nprefix = "example.com/team"\nlocation = "nohost"\n'
    with pytest.raises(ImageReferenceError, match=r"location 'nohost'.*r\.conf.*not a fully"):
        _endpoints(bad, "docker://example.com/team/app:1", tmp_path)


# --------------------------------------------------------------------------------------------
# which files, in which order


def test_files_are_found_and_merged_as_containers_image_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def entry(location: str, **settings: object) -> str:
        extra = "".join(f"{k.replace('_', '-')} = {json.dumps(v)}\n" for k, v in settings.items())
        return f'[[registry]]\nlocation = "{location}"\n{extra}\n'

    system = write(tmp_path / "etc/registries.conf", entry("a.example") + entry("b.example"))
    monkeypatch.setattr(rc, "SYSTEM_CONF", system)
    home = tmp_path / "home"
    env = {"HOME": str(home)}

    def settings(conf: rc.RegistriesConf) -> dict[str, tuple[bool, bool, str]]:
        return {e.prefix: (e.insecure, e.blocked, e.origin.name) for e in conf.registries}

    # the system file and its drop-ins in name order, then the user's drop-ins; a later
    # [[registry]] with the same prefix replaces the earlier one whole
    sysd = system.parent / "registries.conf.d"
    write(sysd / "20-b.conf", entry("b.example", blocked=True))
    write(sysd / "10-b.conf", entry("b.example", insecure=True) + entry("c.example"))
    write(sysd / "30-ignored.txt", entry("a.example", blocked=True))  # only *.conf
    (sysd / "40-dir.conf").mkdir()  # directories are skipped
    userd = home / ".config/containers/registries.conf.d"
    write(userd / "00-user.conf", entry("c.example", insecure=True))
    conf = rc.load(env=env)
    assert settings(conf) == {
        "a.example": (False, False, "registries.conf"),
        "b.example": (False, True, "20-b.conf"),
        "c.example": (True, False, "00-user.conf"),
    }
    assert [p.name for p in conf.files] == [
        "registries.conf",
        "10-b.conf",
        "20-b.conf",
        "00-user.conf",
    ]
    # the user's registries.conf replaces the system's and its drop-ins
    write(home / ".config/containers/registries.conf", entry("u.example"))
    assert settings(rc.load(env=env)) == {
        "c.example": (True, False, "00-user.conf"),
        "u.example": (False, False, "registries.conf"),
    }
    # $CONTAINERS_REGISTRIES_CONF, then --registries-conf: that file and the drop-ins beside it
    env_file = write(tmp_path / "env/registries.conf", entry("e.example"))
    write(tmp_path / "env/registries.conf.d/1.conf", entry("e.example", blocked=True))
    env2 = {**env, "CONTAINERS_REGISTRIES_CONF": str(env_file)}
    assert settings(rc.load(env=env2)) == {"e.example": (False, True, "1.conf")}
    opt = write(tmp_path / "opt/my.conf", entry("o.example"))
    assert settings(rc.load(str(opt), env=env2)) == {"o.example": (False, False, "my.conf")}
    # a named file must exist; the default one need not
    with pytest.raises(UsageError, match=r"--registries-conf .*nothing\.conf: no such file"):
        rc.load(str(tmp_path / "nothing.conf"), env=env2)
    with pytest.raises(UsageError, match=r"\$CONTAINERS_REGISTRIES_CONF .*: no such file"):
        rc.load(env={**env, "CONTAINERS_REGISTRIES_CONF": str(tmp_path / "nothing.conf")})
    monkeypatch.setattr(rc, "SYSTEM_CONF", tmp_path / "none/registries.conf")
    assert rc.load(env={"HOME": str(tmp_path / "nohome")}).registries == ()
    # within one file the first of equal prefixes wins
    one = write(
        tmp_path / "dup.conf",
        entry("d.example", mirror_by_digest_only=True) + entry("d.example"),
    )
    (only,) = rc.load(str(one), env={}).registries
    assert only.mirror_by_digest_only


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[registries.search]\nregistries = ["quay.io"]\n[registries.block]\nregistries = []\n',
            "version 1 format",
        ),
        ('[[registry]]\nlocation = "a.example"\ninsecure = tru\n', "not valid TOML"),
        ('[[registry]]\nlocation = "a.example"\ninsecure = "yes"\n', "insecure must be true"),
        ('[registry]\nlocation = "a.example"\n', "array of tables: write [[registry]]"),
        ("[[registry]]\ninsecure = true\n", "neither prefix nor location"),
        ('[[registry]]\nprefix = "a.example/x"\n', "location is unset"),
        ('[[registry]]\nlocation = "https://a.example"\n', "URI schemes are not supported"),
        ('[[registry]]\nprefix = "*.a.example/ns"\nlocation = "b.example"\n', "wildcard"),
        (
            '[[registry]]\nlocation = "a.example"\npull-from-mirror = "all"\n',
            "pull-from-mirror belongs in [[registry.mirror]]",
        ),
        (
            '[[registry]]\nlocation = "a.example"\n[[registry.mirror]]\nlocation = "m.example"\n'
            'pull-from-mirror = "sometimes"\n',
            "'sometimes' is not one of all, digest-only, tag-only",
        ),
        (
            '[[registry]]\nlocation = "a.example"\nmirror-by-digest-only = true\n'
            '[[registry.mirror]]\nlocation = "m.example"\npull-from-mirror = "all"\n',
            "mirror-by-digest-only",
        ),
        (
            '[[registry]]\nlocation = "a.example"\n[[registry.mirror]]\ninsecure = true\n',
            "no location",
        ),
        (
            '[[registry]]\nprefix = "x.example"\nlocation = "a.example"\ninsecure = true\n'
            '[[registry]]\nprefix = "y.example"\nlocation = "a.example"\n',
            "conflicting 'insecure'",
        ),
    ],
)
def test_a_bad_file_is_refused_with_its_name_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path / "bad.conf", text)
    with pytest.raises(ImageReferenceError) as e:
        rc.load(str(path), env={})
    assert f"registries configuration {path}: " in str(e.value)
    assert problem in str(e.value)
    # the same in a drop-in (which must be version 2 as well)
    main = write(tmp_path / "main/registries.conf", "")
    dropin = write(tmp_path / "main/registries.conf.d/50-bad.conf", text)
    with pytest.raises(ImageReferenceError, match=f"registries configuration {dropin}: "):
        rc.load(str(main), env={})


def test_insecure_allows_plain_http_to_a_registry_that_is_not_local(
    mirror: Registry, tmp_path: Path
) -> None:
    # 0.0.0.0 reaches the loopback registry, but the client does not count it as local
    ref = parse_reference(f"docker://0.0.0.0:{mirror.port}/demo/app1:1")
    with pytest.raises(ImageReferenceError, match=r"over HTTPS.*insecure = true in registries"):
        RegistrySource(ref, TransportOptions()).top_descriptor()
    conf = write(
        tmp_path / "r.conf", f'[[registry]]\nlocation = "0.0.0.0:{mirror.port}"\ninsecure = true\n'
    )
    src = RegistrySource(ref, TransportOptions(registries_conf=str(conf)))
    try:
        assert src.top_descriptor().digest
        assert src.client.scheme == "http"
    finally:
        src.close()
    # --tls-verify=true given on the command line wins over insecure
    src = RegistrySource(ref, TransportOptions(registries_conf=str(conf), tls_verify=True))
    with pytest.raises(ImageReferenceError, match="over HTTPS"):
        src.top_descriptor()


# --------------------------------------------------------------------------------------------
# real registries


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"))


def _push(reg: Registry, samples: SampleImages, *extra: str) -> None:
    skopeo_push(samples.base, reg, "demo/base:latest", *extra)
    skopeo_push(samples.app1, reg, "demo/app1:1", *extra)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, samples: SampleImages) -> Iterator[Registry]:
    """Plain HTTP on 127.0.0.1 holding demo/base:latest and demo/app1:1."""
    reg = Registry(tmp_path_factory.mktemp("mirror")).start()
    try:
        _push(reg, samples)
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    (h / "run").mkdir(parents=True)
    return h


def mirrored(path: Path, primary: str, *mirrors: str, blocked: bool = False, **mirror: str) -> Path:
    """A registries.conf whose [[registry]] at PRIMARY/demo has a mirror at each MIRROR/demo
    (with the settings given as ``mirror``)."""
    text = f'[[registry]]\nlocation = "{primary}/demo"\nblocked = {json.dumps(blocked)}\n'
    extra = "".join(f"{k.replace('_', '-')} = {json.dumps(v)}\n" for k, v in mirror.items())
    text += "".join(f'\n[[registry.mirror]]\nlocation = "{m}/demo"\n{extra}' for m in mirrors)
    return write(path, text)


def dead_host() -> str:
    """A registry address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


def build(host: str, output: str, *extra: str | Path, home: Path, repo: str = "demo", **env: str):
    return bootc_embed(
        "build",
        "--base",
        f"docker://{host}/{repo}/base:latest",
        "--image",
        f"docker://{host}/{repo}/app1:1",
        "--output",
        output,
        "--json",
        *extra,
        home=home,
        **env,
    )


BY_TAG = {"/v2/demo/base/manifests/latest", "/v2/demo/app1/manifests/1"}  # what build() reads


def _served(reg: Registry) -> set[str]:
    """The manifests the registry served since its mark."""
    return {p for m, p, s in reg.requests() if m == "GET" and s == 200 and "/manifests/" in p}


def test_a_mirror_serves_the_pull_when_the_primary_is_unreachable(
    mirror: Registry, samples: SampleImages, tmp_path: Path, home: Path
) -> None:
    dead = dead_host()
    conf = mirrored(tmp_path / "registries.conf", dead, mirror.host)
    out = tmp_path / "out"
    mirror.mark()
    summary = ok(build(dead, f"oci:{out}:1", "--registries-conf", conf, home=home))
    assert _served(mirror) == BY_TAG
    # the image keeps the name the user gave, everywhere: --json, annotations, history
    (app,) = summary["images"]
    assert (app["name"], app["reference"]) == (
        f"{dead}/demo/app1:1",
        f"docker://{dead}/demo/app1:1",
    )
    assert app["manifest_digest"] == layout_digest(samples.app1)
    index = json.loads((out / "index.json").read_text())
    manifest_raw = (out / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text()
    manifest = json.loads(manifest_raw)
    config_raw = (out / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text()
    assert json.loads(manifest["annotations"]["io.bootc-embed.images"])[0]["name"] == (
        f"{dead}/demo/app1:1"
    )
    assert mirror.host not in manifest_raw + config_raw
    assert dead in manifest_raw

    # a mirror's blobs are checked against their digests too: a corrupted one fails the build
    bad = Registry(tmp_path / "bad").start()
    try:
        _push(bad, samples)
        app1 = json.loads(
            (
                Path(samples.app1.split(":")[1]) / "blobs/sha256" / layout_digest(samples.app1)[7:]
            ).read_text()
        )
        digest = app1["layers"][-1]["digest"]
        blob = bad.blob_file(digest)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        conf2 = mirrored(tmp_path / "bad.conf", mirror.host, bad.host)
        err = failed(
            build(
                mirror.host,
                f"oci:{tmp_path}/o2:1",
                "--registries-conf",
                conf2,
                "--no-cache",
                home=home,
            )
        )
        assert digest in err and "does not match its digest" in err
        assert not (tmp_path / "o2").exists()
    finally:
        bad.stop()


def test_pull_from_mirror_digest_only_leaves_the_mirror_out_for_a_tag(
    mirror: Registry, samples: SampleImages, tmp_path: Path, home: Path
) -> None:
    dead = dead_host()
    conf = mirrored(tmp_path / "registries.conf", dead, mirror.host, pull_from_mirror="digest-only")
    mirror.mark()
    err = failed(build(dead, f"oci:{tmp_path}/o:1", "--registries-conf", conf, home=home))
    assert f"{dead}: cannot reach the registry" in err
    assert "mirror" not in err  # the only location tried was the primary
    assert mirror.requests() == []
    # by digest, the mirror serves it
    base, app1 = layout_digest(samples.base), layout_digest(samples.app1)
    summary = ok(
        bootc_embed(
            "build",
            "--base",
            f"docker://{dead}/demo/base@{base}",
            "--image",
            f"{dead}/demo/app1:1=docker://{dead}/demo/app1@{app1}",
            "--output",
            f"oci:{tmp_path}/o2:1",
            "--json",
            "--registries-conf",
            conf,
            home=home,
        )
    )
    assert summary["images"][0]["manifest_digest"] == app1
    assert _served(mirror) == {f"/v2/demo/base/manifests/{base}", f"/v2/demo/app1/manifests/{app1}"}


def test_failing_mirrors_are_skipped_and_every_location_tried_is_named(
    mirror: Registry, samples: SampleImages, tmp_path: Path, home: Path
) -> None:
    users = {"alice": "s3cret-pw"}
    locked = Registry(tmp_path / "locked", htpasswd=htpasswd(tmp_path / "htpasswd", users)).start()
    empty = Registry(tmp_path / "empty").start()
    try:
        _push(locked, samples, "--dest-creds", "alice:s3cret-pw")
        dead, dead2 = dead_host(), dead_host()

        def conf(*mirrors: str) -> Path:
            return mirrored(tmp_path / "registries.conf", dead, *mirrors)

        # 401 (--creds are for the registry named, never sent to a mirror), 404, no answer:
        # each is skipped, and the next mirror serves the image
        all_mirrors = conf(locked.host, empty.host, dead2, mirror.host)
        mirror.mark()
        ok(
            build(
                dead,
                f"oci:{tmp_path}/o:1",
                "--registries-conf",
                all_mirrors,
                "--creds",
                "alice:s3cret-pw",
                home=home,
            )
        )
        assert _served(mirror) == BY_TAG
        # when none serves it, the error names every location and why it failed
        err = failed(
            build(
                dead,
                f"oci:{tmp_path}/o2:1",
                "--registries-conf",
                conf(locked.host, empty.host, dead2),
                home=home,
            )
        )
        assert f"docker://{dead}/demo/base:latest: no location configured in registries.conf" in err
        assert f"mirror {locked.host}/demo/base:latest: " in err and "HTTP 401" in err
        assert (
            f"mirror {empty.host}/demo/base:latest: repository {empty.host}/demo/base "
            "does not exist" in err
        )
        assert f"mirror {dead2}/demo/base:latest: {dead2}: cannot reach the registry" in err
        assert f"; {dead}/demo/base:latest: {dead}: cannot reach the registry" in err
        # a mirror's own credentials come from the auth files, by its host
        authfile = write_auth_json(tmp_path / "auth.json", {locked.host: ("alice", "s3cret-pw")})
        locked.mark()
        ok(
            build(
                dead,
                f"oci:{tmp_path}/o3:1",
                "--registries-conf",
                conf(locked.host),
                "--authfile",
                authfile,
                home=home,
            )
        )
        assert _served(locked) == BY_TAG
    finally:
        locked.stop()
        empty.stop()


def test_a_location_rewrite_pulls_from_the_location_and_pushes_are_not_rewritten(
    mirror: Registry, tmp_path: Path, home: Path
) -> None:
    dead = dead_host()
    conf = write(
        tmp_path / "registries.conf",
        f'[[registry]]\nprefix = "{dead}/team"\nlocation = "{mirror.host}/demo"\n\n'
        f'[[registry]]\nlocation = "{dead}/mirrored"\n\n'
        f'[[registry.mirror]]\nlocation = "{mirror.host}/demo"\n',
    )
    mirror.mark()
    summary = ok(
        build(dead, f"oci:{tmp_path}/o:1", "--registries-conf", conf, repo="team", home=home)
    )
    assert summary["images"][0]["name"] == f"{dead}/team/app1:1"
    assert _served(mirror) == BY_TAG
    # a push goes where the reference says, never to a location or a mirror
    mirror.mark()
    for repo in ("team", "mirrored"):
        err = failed(
            build(
                mirror.host, f"docker://{dead}/{repo}/out:1", "--registries-conf", conf, home=home
            )
        )
        assert f"{dead}: cannot reach the registry" in err
    assert mirror.uploads() == [] and mirror.mounts() == []


def test_a_blocked_registry_is_refused_naming_the_file_unless_a_mirror_serves_it(
    mirror: Registry, samples: SampleImages, tmp_path: Path, home: Path
) -> None:
    conf = write(
        tmp_path / "registries.conf", f'[[registry]]\nlocation = "{mirror.host}"\nblocked = true\n'
    )
    blocked = f"registry {mirror.host} is blocked in {conf}"
    mirror.mark()
    err = failed(build(mirror.host, f"oci:{tmp_path}/o:1", "--registries-conf", conf, home=home))
    assert f"docker://{mirror.host}/demo/base:latest: {blocked}" in err
    # pushes too
    err = failed(
        bootc_embed(
            "build",
            "--base",
            samples.base,
            "--image",
            f"{samples.app1_name}={samples.app1}",
            "--output",
            f"docker://{mirror.host}/demo/out:1",
            "--registries-conf",
            conf,
            home=home,
        )
    )
    assert f"docker://{mirror.host}/demo/out:1: {blocked}" in err
    assert mirror.requests() == []
    # blocked with a mirror: only the mirror is used (what "never contact the source" writes)
    dead = dead_host()
    conf2 = mirrored(tmp_path / "never-source.conf", dead, mirror.host, blocked=True)
    ok(build(dead, f"oci:{tmp_path}/o2:1", "--registries-conf", conf2, home=home))
    # ... and when the mirror fails, the error says the source is blocked
    err = failed(
        build(dead, f"oci:{tmp_path}/o3:1", "--registries-conf", conf2, repo="demo/x", home=home)
    )
    assert f"mirror {mirror.host}/demo/x/base:latest: repository " in err
    assert f"; {dead}/demo/x/base:latest: registry {dead}/demo is blocked in {conf2}" in err


def test_insecure_lets_a_tls_registry_with_an_unknown_ca_be_used(
    tmp_path: Path, samples: SampleImages, home: Path
) -> None:
    certs = make_certs(tmp_path / "certs")
    reg = Registry(tmp_path / "reg", certs=certs).start()
    try:
        _push(reg, samples, "--dest-tls-verify=false")
        out = f"docker://{reg.host}/demo/out:1"
        err = failed(build(reg.host, out, home=home))
        assert "CERTIFICATE_VERIFY_FAILED" in err
        conf = write(
            tmp_path / "registries.conf",
            f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n',
        )
        ok(build(reg.host, out, "--registries-conf", conf, home=home))  # pulls and the push
        assert reg.has_tag("demo/out", "1")
        # an explicit --tls-verify=true wins, as in skopeo
        err = failed(
            build(
                reg.host,
                f"docker://{reg.host}/demo/o2:1",
                "--registries-conf",
                conf,
                "--tls-verify=true",
                home=home,
            )
        )
        assert "CERTIFICATE_VERIFY_FAILED" in err
    finally:
        reg.stop()


def test_drop_ins_and_the_environment_choose_the_configuration(
    mirror: Registry, tmp_path: Path, home: Path
) -> None:
    dead = dead_host()
    main = write(
        tmp_path / "etc/registries.conf",
        f'[[registry]]\nlocation = "{dead}/demo"\nblocked = true\n',
    )
    env = {"CONTAINERS_REGISTRIES_CONF": str(main)}
    err = failed(build(dead, f"oci:{tmp_path}/o:1", home=home, **env))
    assert f"registry {dead}/demo is blocked in {main}" in err
    # a drop-in replaces the [[registry]] of the same prefix
    dropins = main.parent / "registries.conf.d"
    mirrored(dropins / "50-mirror.conf", dead, mirror.host)
    ok(build(dead, f"oci:{tmp_path}/o2:1", home=home, **env))
    # ... and a later one replaces that
    later = write(
        dropins / "60-block.conf",
        f'[[registry]]\nprefix = "{dead}/demo"\nlocation = "{mirror.host}/demo"\nblocked = true\n',
    )
    err = failed(build(dead, f"oci:{tmp_path}/o3:1", home=home, **env))
    assert f"registry {dead}/demo is blocked in {later}" in err
    # --registries-conf wins over the environment
    other = write(
        tmp_path / "mine/registries.conf",
        f'[[registry]]\nprefix = "{dead}/demo"\nlocation = "{mirror.host}/demo"\n',
    )
    ok(build(dead, f"oci:{tmp_path}/o4:1", "--registries-conf", other, home=home, **env))


def test_bad_files_stop_registry_commands_with_a_clear_error(
    mirror: Registry, samples: SampleImages, tmp_path: Path, home: Path
) -> None:
    v1 = write(tmp_path / "v1.conf", f'[registries.insecure]\nregistries = ["{mirror.host}"]\n')
    err = failed(build(mirror.host, f"oci:{tmp_path}/o:1", "--registries-conf", v1, home=home))
    assert f"registries configuration {v1}: this is the version 1 format" in err
    broken = write(tmp_path / "broken.conf", "[[registry]\nlocation = 1\n")
    for command in (
        ("inspect",),
        ("verify",),
        ("diff", f"docker://{mirror.host}/demo/base:latest"),
    ):
        r = bootc_embed(
            *command, f"docker://{mirror.host}/demo/app1:1", "--registries-conf", broken, home=home
        )
        assert f"registries configuration {broken}: not valid TOML" in failed(r)
    # a missing named file is a usage error
    r = build(
        mirror.host, f"oci:{tmp_path}/o:1", "--registries-conf", tmp_path / "nope.conf", home=home
    )
    assert r.returncode == 2 and "nope.conf: no such file" in r.stderr, r.describe()
    # only docker:// references read it
    ok(
        bootc_embed(
            "build",
            "--base",
            samples.base,
            "--image",
            f"{samples.app1_name}={samples.app1}",
            "--output",
            f"oci:{tmp_path}/o2:1",
            "--json",
            "--registries-conf",
            broken,
            home=home,
        )
    )
