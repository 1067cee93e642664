"""Wan weight fetching: local directories, the Hugging Face cache offline, and clear errors.

Nothing here reaches the network: every hub call runs with `offline=True` against a cache
directory made in the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.wan.loading import (
    LONGLIVE,
    SELF_FORCING,
    WAN_BASE_REPO,
    WeightsUnavailable,
    fetch_files,
    fetch_wan_base,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_hub_cache(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """Lay files out as huggingface_hub's cache does: refs/main -> snapshots/<commit>/..."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    snapshot = storage / "snapshots" / COMMIT
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    return snapshot


def test_offline_without_cache_names_the_repo_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable) as caught:
        fetch_wan_base(offline=True, cache_dir=tmp_path)
    message = str(caught.value)
    assert WAN_BASE_REPO in message and "HF_HUB_OFFLINE" in message
    assert (
        f'hf download {WAN_BASE_REPO} --include "vae/*" "text_encoder/*" "tokenizer/*"' in message
    )


def test_offline_checkpoint_error_names_repo_and_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable) as caught:
        fetch_files(SELF_FORCING, offline=True, cache_dir=tmp_path)
    message = str(caught.value)
    assert "hf download gdhe17/Self-Forcing checkpoints/self_forcing_dmd.pt" in message


def test_offline_reads_the_hub_cache(tmp_path: Path) -> None:
    _fake_hub_cache(tmp_path, LONGLIVE.repo, {n: b"w" for n in LONGLIVE.files})
    found = fetch_files(LONGLIVE, offline=True, cache_dir=tmp_path)
    assert set(found) == {"models/longlive_base.pt", "models/lora.pt"}
    assert found["models/lora.pt"].read_bytes() == b"w"


def test_offline_reads_a_cached_wan_snapshot(tmp_path: Path) -> None:
    snapshot = _fake_hub_cache(
        tmp_path,
        WAN_BASE_REPO,
        {"vae/config.json": b"{}", "text_encoder/config.json": b"{}", "tokenizer/t.json": b"{}"},
    )
    assert fetch_wan_base(offline=True, cache_dir=tmp_path) == snapshot


def test_a_cached_snapshot_missing_a_part_is_refused(tmp_path: Path) -> None:
    _fake_hub_cache(tmp_path, WAN_BASE_REPO, {"vae/config.json": b"{}"})
    with pytest.raises(WeightsUnavailable, match="text_encoder, tokenizer"):
        fetch_wan_base(offline=True, cache_dir=tmp_path)


def test_local_wan_directory(tmp_path: Path) -> None:
    for part in ("vae", "text_encoder", "tokenizer"):
        (tmp_path / "wan" / part).mkdir(parents=True)
    assert fetch_wan_base(tmp_path / "wan") == tmp_path / "wan"
    assert fetch_wan_base(str(tmp_path / "wan"), parts=("vae",)) == tmp_path / "wan"


def test_local_wan_directory_missing_a_part_says_which(tmp_path: Path) -> None:
    (tmp_path / "vae").mkdir()
    (tmp_path / "text_encoder").mkdir()
    with pytest.raises(WeightsUnavailable, match="lacks the folder\\(s\\) tokenizer"):
        fetch_wan_base(tmp_path)


def test_local_checkpoint_directory_by_repo_path_or_bare_name(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "self_forcing_dmd.pt").write_bytes(b"x")
    found = fetch_files(SELF_FORCING, local_dir=tmp_path)
    assert found == {
        "checkpoints/self_forcing_dmd.pt": tmp_path / "checkpoints/self_forcing_dmd.pt"
    }

    (tmp_path / "lora.pt").write_bytes(b"y")
    with pytest.raises(WeightsUnavailable, match="models/longlive_base.pt"):
        fetch_files(LONGLIVE, local_dir=tmp_path)


def test_offline_follows_hf_hub_offline_by_default(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailable, match="offline mode is on"):
        fetch_files(LONGLIVE, cache_dir=tmp_path)
