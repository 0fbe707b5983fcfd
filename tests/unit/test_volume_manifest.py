"""Volume manifests: what a directory holds, three-way merges of commits, and bringing a copy to a manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from berth.domain.volume_manifest import FileItem, Head, Manifest, StatCache, apply, merge, scan


def item(text: str, mode: int = 0o644) -> FileItem:
    data = text.encode()
    return FileItem(hashlib.sha256(data).hexdigest(), mode, len(data))


def test_scan_finds_files_and_directories_and_rehashes_only_what_changed(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("one")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to("/etc/passwd")  # not carried
    cache: StatCache = {}
    first = scan(tmp_path, cache)
    assert first.files == {"a/x.txt": item("one")}
    assert first.dirs == {"a", "empty"}
    (tmp_path / "a" / "x.txt").write_text("two!")
    assert scan(tmp_path, cache).files["a/x.txt"] == item("two!")
    (tmp_path / "a" / "x.txt").unlink()
    assert scan(tmp_path, cache).files == {} and cache == {}


def test_a_manifest_round_trips_and_refuses_paths_that_leave_the_volume() -> None:
    m = Manifest({"d/f": item("x", 0o755)}, {"d"})
    assert Manifest.decode(m.encode()) == m
    assert len(m.sha256()) == 64
    for bad in ("../etc/passwd", "/abs", "a//b", "a/./b"):
        raw = Manifest({bad: item("x")}, set()).encode()
        with pytest.raises(ValueError):
            Manifest.decode(raw)
    assert Head.decode(None) == Head(0, "")
    assert Head.decode(Head(3, "ab").encode()) == Head(3, "ab")


def test_merge_keeps_both_sides_changes_and_the_later_commit_wins_a_file() -> None:
    base = Manifest({"shared": item("0"), "gone-by-us": item("g"), "gone-by-them": item("h")}, set())
    ours = Manifest({"shared": item("ours"), "mine": item("m"), "gone-by-them": item("h")}, set())
    theirs = Manifest({"shared": item("theirs"), "gone-by-us": item("g"), "yours": item("y")}, set())
    result = merge(base, ours, theirs)
    assert result.files == {"shared": item("ours"), "mine": item("m"), "yours": item("y")}


def test_merge_does_not_delete_a_file_the_other_side_changed() -> None:
    base = Manifest({"f": item("0")}, set())
    ours = Manifest({}, set())
    theirs = Manifest({"f": item("1")}, set())
    assert merge(base, ours, theirs).files == {"f": item("1")}


def test_merge_adds_the_parent_directories_of_files() -> None:
    result = merge(Manifest(), Manifest({"a/b/c": item("c")}, set()), Manifest())
    assert result.dirs == {"a", "a/b"}


def test_apply_makes_a_directory_hold_exactly_the_manifest(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    for text in ("new", "same"):
        (store / hashlib.sha256(text.encode()).hexdigest()).write_text(text)
    root = tmp_path / "vol"
    (root / "old" / "deep").mkdir(parents=True)
    (root / "old" / "deep" / "f").write_text("stale")
    (root / "keep").write_text("same")
    (root / "file-becomes-dir").write_text("x")
    target = Manifest(
        {"keep": item("same", 0o600), "file-becomes-dir/n": item("new")},
        {"file-becomes-dir", "empty"},
    )
    cache: StatCache = {}
    apply(root, target, cache, lambda sha: store / sha)
    assert scan(root, {}) == target
    assert not (root / "old").exists()
    assert (root / "keep").stat().st_mode & 0o777 == 0o600
