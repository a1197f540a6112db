"""Registry credentials: where ``find_credentials`` looks, in which order, and what it says.

The order is containers-auth.json(5)'s, as containers/image implements it: ``--creds``, then one
file (``--authfile``, else ``$REGISTRY_AUTH_FILE``) when given, else
``${XDG_RUNTIME_DIR}/containers/auth.json``, ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``,
``${DOCKER_CONFIG:-~/.docker}/config.json`` and ``~/.dockercfg``. Every file is real (tmp_path);
credential helpers are small shell scripts put on ``$PATH``. No secret may show in a message.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from unit_support.auth import write_auth_json

from bootc_embed._transports._auth import Credentials, Lookup, find_credentials
from bootc_embed.errors import ImageReferenceError, UsageError

HOST = "reg.example:5000"
SECRET = "pa55:w0rd-s3cret"  # what must never be shown


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private home and runtime directory (nothing of the machine's is read)."""
    return {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run")}


def _user(lookup: Lookup) -> str | None:
    return lookup.credentials.username if lookup.credentials else None


def _shown(lookup: Lookup) -> str:
    """Everything a lookup can show: its description, what was searched and its repr."""
    return "\n".join([lookup.describe(), *lookup.searched, repr(lookup)])


# -- where, in which order -------------------------------------------------------------------------


def test_the_default_files_are_searched_in_order_and_the_first_entry_wins(
    tmp_path: Path, env: dict[str, str]
) -> None:
    home = Path(env["HOME"])
    files = [
        tmp_path / "run/containers/auth.json",
        home / ".config/containers/auth.json",
        home / ".docker/config.json",
        home / ".dockercfg",
    ]
    lookup = find_credentials(HOST, "a/b", env=env)
    assert lookup.credentials is None
    assert lookup.searched == [f"{f} (absent)" for f in files]
    assert lookup.describe() == (
        "no credentials (anonymous; searched: " + "; ".join(lookup.searched) + ")"
    )
    # bottom up: each file added above the others takes over
    files[3].parent.mkdir(parents=True)
    files[3].write_text(json.dumps({HOST: {"auth": _b64("legacy:p")}}))  # no "auths" level
    assert _user(find_credentials(HOST, "a/b", env=env)) == "legacy"
    for f, user in zip(reversed(files[:3]), ("docker", "config", "runtime"), strict=True):
        write_auth_json(f, {HOST: (user, SECRET)})
        lookup = find_credentials(HOST, "a/b", env=env)
        assert lookup.credentials == Credentials(user, SECRET, f"{f} ({HOST})")
        assert lookup.describe() == f"user {user!r} from {f} ({HOST})"
    # a file without an entry for the registry passes the search on
    write_auth_json(files[0], {"other.example": ("x", "y")})
    lookup = find_credentials(HOST, "a/b", env=env)
    assert _user(lookup) == "config"
    assert lookup.searched == [f"{files[0]} (no entry for {HOST})"]


def test_xdg_config_home_and_docker_config_move_their_files(
    tmp_path: Path, env: dict[str, str]
) -> None:
    home = Path(env["HOME"])
    write_auth_json(home / ".config/containers/auth.json", {HOST: ("home-config", "p")})
    write_auth_json(home / ".docker/config.json", {HOST: ("home-docker", "p")})
    write_auth_json(tmp_path / "dc/config.json", {HOST: ("docker-config", "p")})
    moved = {**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "DOCKER_CONFIG": str(tmp_path / "dc")}
    lookup = find_credentials(HOST, "a", env=moved)
    assert _user(lookup) == "docker-config"
    assert lookup.searched[1] == f"{tmp_path}/xdg/containers/auth.json (absent)"
    write_auth_json(tmp_path / "xdg/containers/auth.json", {HOST: ("xdg", "p")})
    assert _user(find_credentials(HOST, "a", env=moved)) == "xdg"


def test_without_xdg_runtime_dir_the_run_containers_file_of_the_user_comes_first(
    env: dict[str, str],
) -> None:
    del env["XDG_RUNTIME_DIR"]
    lookup = find_credentials("reg.invalid", "a", env=env)
    assert lookup.searched[0].startswith(f"/run/containers/{os.getuid()}/auth.json (")
    assert len(lookup.searched) == 4


def test_an_auth_file_named_by_option_or_environment_is_the_only_one_read(
    tmp_path: Path, env: dict[str, str]
) -> None:
    write_auth_json(tmp_path / "run/containers/auth.json", {HOST: ("default", "p")})
    by_env = write_auth_json(tmp_path / "env.json", {HOST: ("env", "p")})
    by_option = write_auth_json(tmp_path / "option.json", {HOST: ("option", "p")})
    with_env = {**env, "REGISTRY_AUTH_FILE": str(by_env)}
    assert _user(find_credentials(HOST, "a", env=with_env)) == "env"
    assert _user(find_credentials(HOST, "a", env=with_env, authfile=str(by_option))) == "option"
    # the named file has no entry, or does not exist: anonymous, the others are not read
    empty = write_auth_json(tmp_path / "empty.json", {})
    for named, note in ((empty, f"no entry for {HOST}"), (tmp_path / "absent.json", "absent")):
        lookup = find_credentials(HOST, "a", env=with_env, authfile=str(named))
        assert (lookup.credentials, lookup.searched) == (None, [f"{named} ({note})"])
        lookup = find_credentials(HOST, "a", env={**env, "REGISTRY_AUTH_FILE": str(named)})
        assert (lookup.credentials, lookup.searched) == (None, [f"{named} ({note})"])


def test_creds_come_before_every_file_and_no_file_is_read(
    tmp_path: Path, env: dict[str, str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    lookup = find_credentials(HOST, "a", env=env, authfile=str(broken), creds="u:p:with:colons")
    assert lookup.credentials == Credentials("u", "p:with:colons", "--creds")
    assert lookup.searched == ["--creds"]
    assert "p:with" not in _shown(lookup)
    assert find_credentials(HOST, "a", env=env, creds="u:").credentials == Credentials(
        "u", "", "--creds"
    )


@pytest.mark.parametrize("creds", ["only-a-user", f":{SECRET}"])
def test_creds_without_a_user_and_a_colon_are_a_usage_error_that_shows_nothing(
    env: dict[str, str], creds: str
) -> None:
    with pytest.raises(UsageError) as exc:
        find_credentials(HOST, "a", env=env, creds=creds)
    assert str(exc.value) == "--creds must be USER:PASSWORD"


# -- which entry of a file -------------------------------------------------------------------------


def test_the_longest_matching_repository_key_wins_component_by_component(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = write_auth_json(
        tmp_path / "auth.json",
        {
            "reg.example": ("host", "p"),
            "reg.example/a": ("a", "p"),
            "reg.example/a/b": ("ab", "p"),
            "reg.example/a/b/c": ("abc", "p"),
            "reg.example:5000": ("port", "p"),
        },
    )
    cases = {
        "a/b/c": "reg.example/a/b/c",
        "a/b/c/d": "reg.example/a/b/c",
        "a/b/x": "reg.example/a/b",
        "a/bb": "reg.example/a",  # a component, not a string prefix
        "ab": "reg.example",
        "x/a/b": "reg.example",
    }
    for repository, key in cases.items():
        lookup = find_credentials("reg.example", repository, env=env, authfile=str(path))
        assert lookup.credentials is not None
        assert lookup.credentials.origin == f"{path} ({key})", repository
    assert _user(find_credentials("reg.example:5000", "a/b", env=env, authfile=str(path))) == "port"
    assert find_credentials("other.example", "a", env=env, authfile=str(path)).credentials is None


@pytest.mark.parametrize(
    ("key", "host", "repository"),
    [
        ("https://reg.example/v1/", "reg.example", "a"),
        ("http://reg.example", "reg.example", "a"),
        ("reg.example/", "reg.example", "a"),
        ("https://index.docker.io/v1/", "docker.io", "library/busybox"),
        ("index.docker.io", "docker.io", "library/busybox"),
        ("registry-1.docker.io", "docker.io", "library/busybox"),
        ("docker.io/library", "docker.io", "library/busybox"),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox"),
    ],
)
def test_keys_are_compared_as_containers_image_normalises_them(
    tmp_path: Path, env: dict[str, str], key: str, host: str, repository: str
) -> None:
    path = write_auth_json(tmp_path / "auth.json", {key: ("found", "p")})
    assert _user(find_credentials(host, repository, env=env, authfile=str(path))) == "found"


def test_entry_forms_auth_identity_token_and_plain_fields(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "auth.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "colons.example": {"auth": _b64(f"user:{SECRET}")},
                    "token.example": {"auth": _b64("x:y"), "identitytoken": "id-tok3n"},
                    "fields.example": {"username": "plain", "password": SECRET},
                    "empty.example": {"auth": ""},
                    "not-an-object.example": "text",
                }
            }
        )
    )

    def found(host: str) -> Lookup:
        return find_credentials(host, "r", env=env, authfile=str(path))

    assert found("colons.example").credentials == Credentials(
        "user", SECRET, f"{path} (colons.example)"
    )
    token = found("token.example")
    assert token.credentials == Credentials(
        "", "", f"{path} (token.example)", identity_token="id-tok3n"
    )
    assert token.describe() == f"an identity token from {path} (token.example)"
    assert "id-tok3n" not in _shown(token)
    assert found("fields.example").credentials == Credentials(
        "plain", SECRET, f"{path} (fields.example)"
    )
    for host in ("empty.example", "not-an-object.example"):
        assert found(host).credentials is None
    for host in ("colons.example", "fields.example"):
        assert SECRET not in _shown(found(host))


# -- broken files: errors name the file, never a secret --------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (json.dumps({"auths": {HOST: {"auth": _b64(SECRET)[:-1]}}}), "is not valid base64"),
        (
            json.dumps({"auths": {HOST: {"auth": _b64(SECRET.replace(":", ""))}}}),
            "is not base64 of USER:PASSWORD",
        ),
        (
            json.dumps({"auths": {HOST: {"auth": base64.b64encode(b"\xff\xfe:x").decode()}}}),
            "is not valid base64",
        ),
        ('{"auths": {"%s": {"auth": "%s"' % (HOST, _b64(SECRET)), "is not valid JSON"),
        (json.dumps([{"auth": _b64(SECRET)}]), "is not a JSON object"),
    ],
    ids=["bad-base64", "no-colon", "not-utf8", "truncated-json", "a-list"],
)
def test_a_broken_auth_file_is_an_error_naming_it_and_showing_no_secret(
    tmp_path: Path, env: dict[str, str], content: str, words: str
) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    for lookup_env, authfile in (
        (env, str(path)),
        ({**env, "REGISTRY_AUTH_FILE": str(path)}, None),
    ):
        with pytest.raises(ImageReferenceError) as exc:
            find_credentials(HOST, "a", env=lookup_env, authfile=authfile)
        message = str(exc.value)
        assert str(path) in message and words in message, message
        for secret in (SECRET, SECRET.replace(":", ""), _b64(SECRET), _b64(SECRET)[:-1]):
            assert secret not in message


def test_an_auth_file_that_cannot_be_read_is_an_error_naming_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "auth.json"
    path.mkdir()
    with pytest.raises(ImageReferenceError, match=f"cannot read auth file {path}: Is a directory"):
        find_credentials(HOST, "a", env=env, authfile=str(path))


def test_an_empty_auth_file_holds_no_entry(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "auth.json"
    path.write_text("  \n")
    lookup = find_credentials(HOST, "a", env=env, authfile=str(path))
    assert (lookup.credentials, lookup.searched) == (None, [f"{path} (no entry for {HOST})"])


# -- credential helpers ----------------------------------------------------------------------------


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on $PATH for docker-credential-* scripts; each records the server it was
    asked for in ``asked``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


def _helper(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f'#!/bin/sh\nread server\necho "$server" >> "{bin_dir}/asked"\n{body}\n')
    script.chmod(0o755)


def _answer(user: str, secret: str) -> str:
    return f"echo '{json.dumps({'ServerURL': 'x', 'Username': user, 'Secret': secret})}'"


def _asked(bin_dir: Path) -> list[str]:
    return (bin_dir / "asked").read_text().splitlines()


def test_cred_helpers_come_before_auths_and_are_asked_for_the_registry(
    tmp_path: Path, env: dict[str, str], helpers: Path
) -> None:
    _helper(helpers, "good", _answer("helped", SECRET))
    path = write_auth_json(
        tmp_path / "auth.json",
        {HOST: ("from-auths", "p"), "docker.io": ("hub-auths", "p")},
        credHelpers={f"https://{HOST}": "good", "index.docker.io": "good"},
    )
    lookup = find_credentials(HOST, "a", env=env, authfile=str(path))
    assert lookup.credentials == Credentials("helped", SECRET, "docker-credential-good")
    assert lookup.searched == [f"{path} credHelpers: docker-credential-good"]
    assert SECRET not in _shown(lookup)
    assert _user(find_credentials("docker.io", "library/x", env=env, authfile=str(path))) == (
        "helped"
    )
    # Docker Hub's helper entries are stored under docker's URL for it
    assert _asked(helpers) == [HOST, "https://index.docker.io/v1/"]


def test_a_helper_answering_token_gives_an_identity_token(
    tmp_path: Path, env: dict[str, str], helpers: Path
) -> None:
    _helper(helpers, "tok", _answer("<token>", "refresh-t0ken"))
    path = write_auth_json(tmp_path / "auth.json", {}, credHelpers={HOST: "tok"})
    lookup = find_credentials(HOST, "a", env=env, authfile=str(path))
    assert lookup.credentials == Credentials(
        "", "", "docker-credential-tok", identity_token="refresh-t0ken"
    )
    assert "refresh-t0ken" not in _shown(lookup)


@pytest.mark.parametrize(
    ("body", "note"),
    [
        (None, "docker-credential-h (not installed)"),
        (f"echo 'credentials not found in native keychain {SECRET}'; exit 1", "no entry for"),
        (f"echo 'fatal: {SECRET}' >&2; exit 3", "docker-credential-h (exit status 3)"),
        (f"echo 'not json {SECRET}'", "docker-credential-h (unreadable answer)"),
        (_answer("u", ""), "no entry for"),
    ],
    ids=["missing", "not-found", "failing", "garbage", "empty-secret"],
)
def test_a_helper_that_gives_nothing_passes_the_search_on_and_shows_no_output(
    tmp_path: Path, env: dict[str, str], helpers: Path, body: str | None, note: str
) -> None:
    if body is not None:
        _helper(helpers, "h", body)
    home = Path(env["HOME"])
    helped = write_auth_json(
        tmp_path / "run/containers/auth.json", {HOST: ("shadowed", "p")}, credHelpers={HOST: "h"}
    )
    write_auth_json(home / ".docker/config.json", {HOST: ("docker", "p")})
    lookup = find_credentials(HOST, "a", env=env)
    assert _user(lookup) == "docker"  # the next file, not the auths entry beside the helper
    assert lookup.searched[0].startswith(f"{helped} credHelpers: ")
    assert note in lookup.searched[0]
    assert SECRET not in _shown(lookup)


def test_creds_store_is_asked_when_no_entry_matches(
    tmp_path: Path, env: dict[str, str], helpers: Path
) -> None:
    _helper(
        helpers,
        "store",
        f'[ "$server" = "{HOST}" ] && {_answer("stored", SECRET)} || '
        "{ echo 'credentials not found in native keychain'; exit 1; }",
    )
    path = write_auth_json(
        tmp_path / "auth.json", {"plain.example": ("plain", "p")}, credsStore="store"
    )
    assert _user(find_credentials("plain.example", "a", env=env, authfile=str(path))) == "plain"
    assert _user(find_credentials(HOST, "a", env=env, authfile=str(path))) == "stored"
    nothing = find_credentials("other.example", "a", env=env, authfile=str(path))
    assert nothing.credentials is None
    assert nothing.searched == [
        f"{path} credsStore: docker-credential-store (no entry for other.example)"
    ]
    assert _asked(helpers) == [HOST, "other.example"]  # not asked when auths had an entry
