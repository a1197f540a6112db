"""The optimistic one-pass writer (rewriting recent headers in place) and the two-pass writer
(used when a contradiction is older than the rewrite window) must give the same bytes."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from unit_support.oci import info, tar_of, write_layout

from bootc_embed import BuildOptions, _transform, build
from bootc_embed._demo import write_sample_images


def _layers_with_late_facts() -> list[bytes]:
    """Every kind of fact that shows up after the header it changes."""
    return [
        tar_of(
            [
                (info("d/", tarfile.DIRTYPE), b""),
                (info("d/a"), b"a"),
                (info("d/b"), b"b"),
                (info("o/", tarfile.DIRTYPE), b""),
                (info("o/old"), b"old"),
                (info("f", mode=0o600), b"file"),
            ]
        ),
        tar_of(
            [
                (info("d/", tarfile.DIRTYPE, mode=0o700), b""),
                (info("d/new"), b"n"),
                (info("d/.wh.a"), b""),  # d turns out to hold a whiteout
                (info("o/", tarfile.DIRTYPE), b""),
                (info("o/.wh.old"), b""),  # written, then dropped: o turns out opaque
                (info("o/.wh..wh..opq"), b""),
                (info("late/child"), b"c"),  # parent written as missing...
                (info("late/", tarfile.DIRTYPE, mode=0o750, uid=7), b""),  # ...then its entry
                (info("g"), b"inode"),
                (info("h", tarfile.LNKTYPE, linkname="g", mode=0o4755, uid=5), b""),
                (info(".wh.f"), b""),  # a whiteout at the layer root
            ]
        ),
    ]


@pytest.mark.parametrize("form", ["xattr", "chardev", "ostree"])
def test_rewrite_window_and_second_pass_give_the_same_bytes(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = write_sample_images(tmp_path / "samples", architecture="amd64")
    late = write_layout(tmp_path / "late", _layers_with_late_facts())
    images = [*samples.image_args, f"localhost/t/late:1={late}"]
    digests = []
    for window in (_transform._Out.WINDOW, 0):  # 0: every contradiction needs a second pass
        monkeypatch.setattr(_transform._Out, "WINDOW", window)
        passes: list[bool] = []
        attempt = _transform._attempt

        def counting(*args: object, _a=attempt, _p=passes) -> object:
            _p.append(args[3] is not None)
            return _a(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(_transform, "_attempt", counting)
        out = tmp_path / f"out-{window}"
        result = build(
            BuildOptions(
                base=samples.base,
                images=images,
                output=f"oci:{out}:1",
                whiteouts=form,
                cache=False,
                jobs=1,
            )
        )
        digests.append(result.manifest_digest)
        assert any(passes) == (window == 0)  # the window avoided every second pass
    assert digests[0] == digests[1]
