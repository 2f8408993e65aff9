"""The evaluation portal refuses bad uploads with their reasons and leaves nothing behind (zip bombs, symlinks,
lying headers, wrong sizes or formats, too many files), and accepts harmless archive extras."""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _portal_testing import (
    ALICE,
    META,
    SIZE,
    VAL_IDS,
    FakeHubApi,
    build_val294_like,
    good_zip,
    jpeg,
    make_portal,
    png,
    portal_leftovers,
    prediction_arrays,
    write_folder,
    write_zip,
)

from evaluation.portal import CheckLimits, SubmissionRefused


@pytest.fixture(autouse=True)
def _no_lpips_trunk(tmp_path_factory, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path_factory.getbasetemp() / "empty-hub"))
    monkeypatch.delenv("BOKEH_ORGANIZER_TOKEN", raising=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_val294_like(tmp_path_factory.mktemp("ebb"))


@pytest.fixture(scope="module")
def arrays(dataset) -> dict[str, np.ndarray]:
    return prediction_arrays(dataset)


def _symlink_zip(path: Path, arrays) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for i, a in list(arrays.items())[1:]:
            archive.writestr(f"{i}.png", png(a))
        link = zipfile.ZipInfo(f"{VAL_IDS[0]}.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return path


def _lying_header_zip(path: Path, arrays) -> Path:
    """A valid zip whose central directory understates one entry's uncompressed size (a bomb that lies)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, a in arrays.items():
            archive.writestr(f"{i}.png", png(a) + (b"\0" * 3_000_000 if i == VAL_IDS[0] else b""))
    data = bytearray(path.read_bytes())
    name = f"{VAL_IDS[0]}.png".encode()
    for signature, size_offset, name_offset in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            if data[start + name_offset : start + name_offset + len(name)] == name:
                struct.pack_into("<I", data, start + size_offset, 20_000)
            start += 4
    path.write_bytes(bytes(data))
    return path


def _corpus(tmp_path: Path, arrays: dict[str, np.ndarray]) -> dict[str, tuple[Path, str]]:
    """name -> (file, the problem code it must be refused with)."""
    good = {f"{i}.png": png(a) for i, a in arrays.items()}
    first = VAL_IDS[0]
    wrong_size = np.zeros((SIZE[1], SIZE[0] - 8, 3), np.uint8)
    corpus = {
        "bomb": (write_zip(tmp_path / "bomb.zip", {**good, "padding.png": b"\0" * 30_000_000}), "bomb"),
        "lying_header": (_lying_header_zip(tmp_path / "lying.zip", arrays), "corrupt"),
        "traversal": (write_zip(tmp_path / "trav.zip", {**good, "../../evil.png": png(arrays[first])}), "traversal"),
        "absolute": (write_zip(tmp_path / "abs.zip", {**good, "/tmp/evil.png": png(arrays[first])}), "traversal"),
        "symlink": (_symlink_zip(tmp_path / "link.zip", arrays), "symlink"),
        "missing_id": (
            write_zip(tmp_path / "missing.zip", {k: v for k, v in good.items() if first not in k}),
            "missing",
        ),
        "extra_id": (write_zip(tmp_path / "extra.zip", {**good, "9999.png": png(arrays[first])}), "extra"),
        "non_image": (write_zip(tmp_path / "text.zip", {**good, f"{first}.png": b"just some text"}), "not_image"),
        "gif": (write_zip(tmp_path / "gif.zip", {**good, f"{first}.png": _gif(arrays[first])}), "not_image"),
        "wrong_size": (write_zip(tmp_path / "size.zip", {**good, f"{first}.png": png(wrong_size)}), "wrong_size"),
        "bad_name": (write_zip(tmp_path / "name.zip", {**good, "notes.txt": b"hello"}), "bad_name"),
        "duplicate": (write_zip(tmp_path / "dup.zip", {**good, f"{first}.jpg": jpeg(arrays[first])}), "duplicate"),
        "two_folders": (
            write_zip(tmp_path / "nest.zip", {**{f"a/{k}": v for k, v in good.items()}, "b/x.png": b""}),
            "folders",
        ),
        "not_zip": (_write(tmp_path / "fake.zip", b"PK but not really a zip"), "not_zip"),
    }
    return corpus


def _gif(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="GIF")
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_each_bad_zip_is_refused_with_its_reason_and_leaves_nothing(tmp_path, dataset, arrays):
    api = FakeHubApi()
    portal = make_portal(tmp_path, dataset, api, per_day=100)
    commits_before = len(api.commits)
    for name, (path, code) in _corpus(tmp_path, arrays).items():
        with pytest.raises(SubmissionRefused) as caught:
            portal.submit(path, META, ALICE)
        report = caught.value.report
        assert code in report.codes, (name, report.render())
        text = report.render()
        assert text.startswith("Refused") and "nothing was kept" in text, name
        if name == "traversal":
            assert "../../evil.png" in text  # the report names the offending entry
        assert portal_leftovers(portal) == [], (name, portal_leftovers(portal))
    assert portal.queue.jobs() == [] and portal.store.submissions() == []
    assert len(api.commits) == commits_before  # nothing published


def test_limits_and_several_problems_in_one_report(tmp_path, dataset, arrays):
    portal = make_portal(tmp_path, dataset, limits=CheckLimits(max_archive_bytes=10_000))
    with pytest.raises(SubmissionRefused) as caught:
        portal.submit(good_zip(tmp_path / "big.zip", arrays), META, ALICE)
    assert caught.value.report.codes == {"too_large"}
    portal = make_portal(tmp_path / "b", dataset)
    first, second = VAL_IDS[0], VAL_IDS[1]
    entries = {f"{i}.png": png(a) for i, a in arrays.items() if i not in (first, second)}
    entries["../x.png"] = b""
    entries["77.png"] = png(arrays[first])
    with pytest.raises(SubmissionRefused) as caught:
        portal.submit(write_zip(tmp_path / "many.zip", entries), META, ALICE)
    assert {"traversal", "missing", "extra"} <= caught.value.report.codes
    text = caught.value.report.render()
    assert f"{first}, {second}" in text and "77" in text


def test_folder_with_a_symlink_is_refused(tmp_path, dataset, arrays):
    portal = make_portal(tmp_path, dataset)
    folder = write_folder(tmp_path / "f", arrays)
    (folder / f"{VAL_IDS[0]}.png").unlink()
    (folder / f"{VAL_IDS[0]}.png").symlink_to(folder / f"{VAL_IDS[1]}.png")
    with pytest.raises(SubmissionRefused) as caught:
        portal.submit(folder, META, ALICE)
    assert "symlink" in caught.value.report.codes and portal_leftovers(portal) == []


def test_macos_archive_extras_are_ignored_and_jpeg_is_accepted(tmp_path, dataset, arrays):
    portal = make_portal(tmp_path, dataset)
    entries = {f"{i}.JPG": jpeg(a) for i, a in arrays.items()}
    entries["__MACOSX/._4400.JPG"] = b"\0\5\26\7"
    entries[".DS_Store"] = b"\0"
    sub_id = portal.submit(write_zip(tmp_path / "mac.zip", entries), META, ALICE)
    assert sorted(p.name for p in (portal.root / "predictions" / sub_id).iterdir()) == [f"{i}.jpg" for i in VAL_IDS]
