"""Published method weights (``bokeh_model.method_weights``): declared once, fetched by ``fetch METHOD``.

A stand-in method's two checkpoint files are built here and served from 127.0.0.1; every cache points into
``tmp_path``. The real methods' declarations are checked for what a user is shown (source, licence, citation).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _local_server import LocalServer

from bokeh_model.cli import main as cli_main
from bokeh_model.errors import InputError
from bokeh_model.fetch import FetchError
from bokeh_model.method_weights import (
    _SPECS,
    MethodWeights,
    WeightsFile,
    fetch_method_weights,
    installed_weights,
    method_weights_dir,
    register_weights,
    weights_availability,
    weights_spec_names,
)

NET_A = b"network A " * 4000
NET_B = b"network B " * 3000


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOKEH_CACHE", str(tmp_path / "cache"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BOKEH_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def served() -> Iterator[LocalServer]:
    with LocalServer() as server:
        server.add("/ckpt/net_a.pth", NET_A)
        server.add("/ckpt/net_b.pth", NET_B)
        server.add("/single/small.pt", NET_A)
        yield server


@pytest.fixture
def standin(served: LocalServer) -> Iterator[MethodWeights]:
    spec = MethodWeights(
        method="standin-weights",
        variants={
            "pair": (
                WeightsFile("net_a.pth", served.url("/ckpt/net_a.pth"), hashlib.sha256(NET_A).hexdigest()),
                WeightsFile("net_b.pth", served.url("/ckpt/net_b.pth")),
            ),
            "single": (WeightsFile("small.pt", served.url("/single/small.pt")),),
        },
        default_variant="pair",
        source="https://example.invalid/standin",
        license="Stand-in licence line",
        citation="Stand-in citation",
    )
    register_weights(spec)
    yield spec
    _SPECS.pop(spec.method, None)


def test_fetch_installs_every_file_with_source_json_and_is_idempotent(caches: Path, standin: MethodWeights) -> None:
    ok, why = weights_availability("standin-weights")
    assert not ok and "python -m bokeh_model fetch standin-weights" in why and "--url" in why
    result = fetch_method_weights("standin-weights", progress=False)
    folder = method_weights_dir("standin-weights", "pair")
    assert result.status == "installed" and result.path == folder == installed_weights("standin-weights")
    assert (folder / "net_a.pth").read_bytes() == NET_A and (folder / "net_b.pth").read_bytes() == NET_B
    record = json.loads((folder / "source.json").read_text())
    assert record["license"] == "Stand-in licence line" and record["citation"] == "Stand-in citation"
    assert [f["sha256"] for f in record["files"]] == [hashlib.sha256(d).hexdigest() for d in (NET_A, NET_B)]
    assert fetch_method_weights("standin-weights", progress=False).status == "already installed"
    assert weights_availability("standin-weights")[0]
    # the other variant is separate and still missing
    assert installed_weights("standin-weights", "single") is None
    assert not (caches / "downloads" / "standin-weights-pair").exists()


def test_url_overrides_a_file_or_a_folder(caches: Path, standin: MethodWeights, served: LocalServer) -> None:
    served.add("/mirror/net_a.pth", NET_A)
    served.add("/mirror/net_b.pth", NET_B)
    served.add("/elsewhere/other-name.pt", NET_B)
    fetch_method_weights("standin-weights", url=served.url("/mirror/"), progress=False)
    fetch_method_weights("standin-weights", "single", url=served.url("/elsewhere/other-name.pt"), progress=False)
    single = installed_weights("standin-weights", "single")
    assert single is not None and (single / "small.pt").read_bytes() == NET_B


def test_wrong_digest_or_unreachable_leaves_nothing_installed(
    caches: Path, standin: MethodWeights, served: LocalServer
) -> None:
    served.add("/bad/net_a.pth", b"not the declared file")
    served.add("/bad/net_b.pth", NET_B)
    with pytest.raises(FetchError):
        fetch_method_weights("standin-weights", url=served.url("/bad/"), progress=False)
    with pytest.raises(FetchError):
        fetch_method_weights("standin-weights", url="http://127.0.0.1:9/", progress=False)
    assert installed_weights("standin-weights") is None
    assert not method_weights_dir("standin-weights", "pair").exists()


def test_offline_and_unknown_names(caches: Path, standin: MethodWeights) -> None:
    with pytest.raises(FetchError, match="offline"):
        fetch_method_weights("standin-weights", offline=True)
    with pytest.raises(InputError, match="no weights variant 'huge'.*pair, single"):
        fetch_method_weights("standin-weights", "huge")
    with pytest.raises(InputError, match="no published weights"):
        fetch_method_weights("no-such-method")


def test_a_local_copy_installs_offline_by_path(
    caches: Path, standin: MethodWeights, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An offline machine with the checkpoints carried over by hand: `--url PATH` (a file or a folder) installs
    them; nothing is asked of the network, and a path that does not exist is named."""
    copies = tmp_path / "carried"
    copies.mkdir()
    (copies / "net_a.pth").write_bytes(NET_A)
    (copies / "net_b.pth").write_bytes(NET_B)
    (copies / "renamed.pt").write_bytes(NET_B)
    with pytest.raises(FetchError, match="give a copy of a folder holding net_a.pth, net_b.pth: --url PATH"):
        fetch_method_weights("standin-weights", offline=True)
    fetch_method_weights("standin-weights", url=str(copies), offline=True, progress=False)
    folder = installed_weights("standin-weights")
    assert folder is not None and (folder / "net_b.pth").read_bytes() == NET_B
    assert json.loads((folder / "source.json").read_text())["files"][0]["url"] == (copies / "net_a.pth").as_uri()
    argv = ["fetch", "standin-weights", "--variant", "single", "--offline", "--no-progress"]
    assert cli_main([*argv, "--url", str(copies / "renamed.pt")]) == 0
    single = installed_weights("standin-weights", "single")
    assert single is not None and (single / "small.pt").read_bytes() == NET_B
    assert cli_main([*argv, "--overwrite", "--url", str(copies / "missing.pt")]) == 2
    assert "missing.pt' is neither a URL" in capsys.readouterr().err
    assert (single / "small.pt").read_bytes() == NET_B  # the refused call left the installed copy alone


def test_cli_fetch_method_and_its_refusals(
    caches: Path, standin: MethodWeights, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["fetch", "standin-weights", "--variant", "single", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Stand-in licence line" in out and "installed at" in out
    assert installed_weights("standin-weights", "single") is not None
    assert cli_main(["fetch", "nonsense"]) == 2
    assert "known items are pynet, depth, lpips" in capsys.readouterr().err
    assert cli_main(["fetch", "pynet", "standin-weights", "--url", "http://127.0.0.1:9/x"]) == 2
    assert cli_main(["fetch", "depth", "--variant", "single"]) == 2


def test_two_processes_fetching_at_once_both_end_with_one_complete_folder(caches: Path, standin: MethodWeights) -> None:
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            fetch_method_weights("standin-weights", progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    folder = installed_weights("standin-weights")
    assert folder is not None and (folder / "net_b.pth").read_bytes() == NET_B
    assert errors == []  # the one that waited used the other's result


def test_every_declared_method_names_source_licence_and_citation() -> None:
    for name in weights_spec_names():
        spec = _SPECS[name]
        assert spec.source.startswith("https://") and spec.license and spec.citation, name
        for files in spec.variants.values():
            assert files and all(f.url.startswith("https://") for f in files), name
