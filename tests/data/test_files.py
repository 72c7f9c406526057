"""Fetching and verifying data files: downloads from a local mirror, the one-line failures (no
network, HTTP 404, another hash, a damaged cache), gzip content hashes and unpinned files."""

import gzip
import hashlib

import pytest

from pyrovae import DataError
from pyrovae.data.files import DataFile, fetch, read_verified

from .fakes import closed_port_url, sha256, write_gzip


def _spec(name, data, *urls):
    return DataFile(name, tuple(u + name for u in urls), hashlib.sha256(data).hexdigest())


def test_a_missing_file_is_downloaded_from_the_first_mirror_that_answers(tmp_path, server, capfd):
    root, url = server
    (root / "a.bin").write_bytes(b"payload")
    spec = _spec("a.bin", b"payload", closed_port_url(), url)
    folder = tmp_path / "cache"
    fetch("toy", [spec], folder)
    assert read_verified(spec, folder) == b"payload"
    assert [p.name for p in folder.iterdir()] == ["a.bin"]  # no temporary file left behind
    assert capfd.readouterr().err == ""  # a library call prints nothing
    (root / "a.bin").unlink()
    fetch("toy", [spec], folder)  # present: no download


def test_no_network_is_one_line_naming_each_file_its_hash_and_folder(tmp_path):
    down = closed_port_url()
    specs = [_spec("a.bin", b"a", down), _spec("b.bin", b"b", down, down)]
    folder = tmp_path / "cache"
    with pytest.raises(DataError) as e:
        fetch("toy", specs, folder)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"dataset 'toy': 2 file(s) missing in {folder} and no network to download them")
    assert "connection refused" in msg
    for s in specs:
        assert f"{s.name} (SHA-256 {s.sha256})" in msg
    assert msg.endswith(f"into {folder}, or point data_path at a folder that holds them")
    assert not folder.exists()  # a failed fetch leaves no empty folder behind


def test_a_mirror_that_refuses_is_named(tmp_path, server):
    _, url = server
    with pytest.raises(DataError, match=r"could not download a\.bin into .*: http://127\.0\.0\.1:\d+/a\.bin: "
                                        r"HTTP 404 File not found$"):  # fmt: skip
        fetch("toy", [_spec("a.bin", b"a", url)], tmp_path)


def test_a_download_with_another_hash_is_refused_and_not_kept(tmp_path, server):
    root, url = server
    (root / "a.bin").write_bytes(b"tampered")
    spec = _spec("a.bin", b"expected", url)
    got = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(DataError, match=f"a.bin served a file with SHA-256 {got}, not {spec.sha256}"):
        fetch("toy", [spec], tmp_path / "cache")
    assert not (tmp_path / "cache" / "a.bin").exists()


def test_a_damaged_file_is_caught_at_load_and_named(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"payload")
    spec = _spec("a.bin", b"payload")
    assert read_verified(spec, tmp_path) == b"payload"
    (tmp_path / "a.bin").write_bytes(b"paylOad")
    actual = sha256(tmp_path / "a.bin")
    with pytest.raises(DataError) as e:
        read_verified(spec, tmp_path)
    assert str(e.value) == (f"{tmp_path / 'a.bin'} has SHA-256 {actual}, not {spec.sha256}: it is damaged or "
                            "another file; delete it and it will be downloaded again")  # fmt: skip


def test_a_gzipped_copy_with_other_bytes_but_the_same_content_is_accepted(tmp_path):
    content = b"the same data " * 100
    write_gzip(tmp_path / "a.gz", content, mtime=0, level=9)
    spec = DataFile("a.gz", (), sha256(tmp_path / "a.gz"), hashlib.sha256(content).hexdigest())
    assert read_verified(spec, tmp_path, gunzip=True) == content
    write_gzip(tmp_path / "a.gz", content, mtime=12345, level=1)  # gzipped again: other bytes
    assert sha256(tmp_path / "a.gz") != spec.sha256
    assert read_verified(spec, tmp_path, gunzip=True) == content
    assert gzip.decompress(read_verified(spec, tmp_path)) == content
    write_gzip(tmp_path / "a.gz", content + b"!")
    with pytest.raises(DataError, match=f"not {spec.sha256} \\(or {spec.content_sha256} once gunzipped\\).*delete it"):
        read_verified(spec, tmp_path, gunzip=True)


def test_an_unpinned_file_is_refused_until_its_hash_is_pinned(tmp_path, monkeypatch):
    spec = DataFile("chardata.mat", (closed_port_url() + "chardata.mat",), None)
    (tmp_path / "chardata.mat").write_bytes(b"matlab")
    for call in (lambda: fetch("omniglot", [spec], tmp_path / "empty"), lambda: read_verified(spec, tmp_path)):
        with pytest.raises(DataError, match="^no SHA-256 is pinned for chardata.mat in this version of pyrovae.*"
                                            "PYROVAE_SHA256_CHARDATA_MAT=<its SHA-256"):  # fmt: skip
            call()
    monkeypatch.setenv("PYROVAE_SHA256_CHARDATA_MAT", "not a hash")
    with pytest.raises(DataError, match="PYROVAE_SHA256_CHARDATA_MAT='not a hash' is not a SHA-256"):
        read_verified(spec, tmp_path)
    monkeypatch.setenv("PYROVAE_SHA256_CHARDATA_MAT", sha256(tmp_path / "chardata.mat").upper())
    assert read_verified(spec, tmp_path) == b"matlab"
    (tmp_path / "chardata.mat").write_bytes(b"matlab, changed")
    with pytest.raises(DataError, match="chardata.mat has SHA-256 .*delete it"):
        read_verified(spec, tmp_path)


def test_a_gzip_bomb_is_refused_by_its_hash_before_it_is_unpacked(tmp_path, monkeypatch):
    """A gzipped file whose bytes do not match is unpacked only a piece at a time for its content
    hash, and never past its limit: a bomb (100 MiB of zeros in 100 KiB) stops at the limit."""
    write_gzip(tmp_path / "a.gz", bytes(100 * 2**20), level=9)
    assert (tmp_path / "a.gz").stat().st_size < 2**20
    spec = DataFile("a.gz", (), "0" * 64, hashlib.sha256(b"the real content").hexdigest(), content_limit=2**20)

    def whole(*a, **k):
        raise AssertionError("decompressed whole before its hash was checked")

    monkeypatch.setattr(gzip, "decompress", whole)
    with pytest.raises(DataError, match="has SHA-256 .* not 0{64} \\(or .* once gunzipped\\)"):
        read_verified(spec, tmp_path, gunzip=True)


def test_a_pinned_git_blob_id_is_checked_and_the_sha256_recorded(tmp_path):
    """The id git gives a file (SHA-1 of "blob <size>\\0" + bytes; ``git hash-object``), checked at
    every load, and the SHA-256 of the first verified load recorded beside the file and checked after."""
    (tmp_path / "a.txt").write_bytes(b"hello\n")
    spec = DataFile("a.txt", (), None, git_blob="ce013625030ba8dba906f756967f9e9ca394464a")  # git's id of "hello\n"
    assert read_verified(spec, tmp_path) == b"hello\n"
    record = tmp_path / "a.txt.sha256"
    assert record.read_text().strip() == hashlib.sha256(b"hello\n").hexdigest()
    assert read_verified(spec, tmp_path) == b"hello\n"
    record.write_text("0" * 64 + "\n")
    with pytest.raises(DataError, match="has SHA-256 .*, not 0{64} as when it was first verified"):
        read_verified(spec, tmp_path)
    (tmp_path / "a.txt").write_bytes(b"hellO\n")
    with pytest.raises(DataError, match="has git blob id [0-9a-f]{40}, not ce0136.*delete it"):
        read_verified(spec, tmp_path)
