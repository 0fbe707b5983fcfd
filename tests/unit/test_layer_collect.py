"""Collecting a forgotten image's layers: its own go, those another image on the host (of any server that
registered its manifests) or a running container uses stay."""

from __future__ import annotations

from pathlib import Path

from berth.worker.layers import ImageManifest, LayerStore, ManifestStore


def test_collect_removes_only_layers_no_other_image_or_container_uses(tmp_path: Path) -> None:
    layers = LayerStore(tmp_path / "cache" / "layers")
    ours, theirs = ManifestStore(tmp_path / "a" / "images"), ManifestStore(tmp_path / "b" / "images")
    layers.register_manifests(ours.root)
    layers.register_manifests(theirs.root)
    shared, unique, other_server, mounted = (layers.commit(k, layers.new_tmp()) for k in ("s", "u", "o", "m"))
    ours.save(ImageManifest("im-gone", "/base", [str(shared), str(unique), str(other_server), str(mounted)]))
    ours.save(ImageManifest("im-kept", "/base", [str(shared)]))
    theirs.save(ImageManifest("im-theirs", "/base", [str(other_server)]))
    mounts = f"1 2 0:1 / /x rw - overlay overlay rw,lowerdir={mounted}:/base,upperdir=/y\n"

    forgotten = ours.forget("im-gone")
    assert forgotten is not None and ours.load("im-gone") is None
    removed = layers.collect({Path(p) for p in forgotten.layers}, mounts=mounts)

    assert removed == [unique.resolve()]
    assert not unique.exists() and layers.get("u") is None
    for kept, key in ((shared, "s"), (other_server, "o"), (mounted, "m")):
        assert kept.is_dir() and layers.get(key) == kept


def test_a_server_whose_data_dir_is_gone_holds_no_layers(tmp_path: Path) -> None:
    layers = LayerStore(tmp_path / "layers")
    gone = ManifestStore(tmp_path / "gone" / "images")
    layer = layers.commit("k", layers.new_tmp())
    gone.save(ImageManifest("im-1", "/base", [str(layer)]))
    layers.register_manifests(gone.root)
    assert layers.layers_in_use() == {layer.resolve()}
    for path in gone.root.iterdir():
        path.unlink()
    gone.root.rmdir()
    assert layers.layers_in_use() == set()
    assert layers.collect({layer}, mounts="none\n") == [layer.resolve()]
