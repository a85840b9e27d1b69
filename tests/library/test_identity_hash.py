"""One model, one hash: the browser, the library records and the pictures' metadata agree."""

from __future__ import annotations

from engine.families.registry import _weights_hash
from engine.library.hashing import HashCache, identity_path, short_hash
from engine.paths import resource


def test_a_native_folder_is_known_by_its_weights_hash(tmp_path):
    folder = resource("models", "emoji-ldm")
    assert identity_path(folder) == folder / "model.safetensors"
    cache = HashCache(tmp_path / "hashes.sqlite3")
    shown = short_hash(cache.sha256(identity_path(folder)))
    assert shown == _weights_hash(folder) and len(shown) == 10
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"x")
    assert identity_path(single) == single and identity_path(tmp_path) == tmp_path
