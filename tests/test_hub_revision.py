"""A hub model is keyed by its resolved commit, so its adapter is found again whether or not the weights were
downloaded when it was trained (issue 14: the key used to be `hub:not-cached` on the first run, `hub:<commit>` after).

No network: the HF cache is a private folder, offline, and the one hub call (`hf_hub_download`) is replaced by a
stand-in that leaves in the cache what a real download leaves: refs/main naming the commit, files under
snapshots/<commit>/.
"""

from __future__ import annotations

import shutil

import huggingface_hub
import pytest
from huggingface_hub import constants

from models import weights
from models.catalog import CatalogEntry
from models.errors import BackendError
from models.finetune import lora
from models.finetune.recipe import TINY

REPO = "ftbench-test/tiny-random"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PAIRS = [lora.TrainingPair(f"Q: {i} plus {i}?\nA: ", str(2 * i)) for i in range(8)]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """(HF cache folder, publish): `publish()` puts tiny-random, saved, in the cache as a download of REPO would."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at call time by huggingface_hub and transformers
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    remote = tmp_path / "remote"
    model, tokenizer, _ = weights.load_tiny_random()
    model.save_pretrained(remote)
    tokenizer.save_pretrained(remote)
    repo = cache / f"models--{REPO.replace('/', '--')}"

    def publish() -> None:
        shutil.copytree(remote, repo / "snapshots" / COMMIT)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)

    return cache, publish


def test_adapter_trained_before_the_download_is_a_cache_hit_after_it(hub, tmp_path, monkeypatch):
    cache, publish = hub
    downloads = []

    def download(repo_id, filename, **_):  # the hub: the first call downloads REPO into the HF cache
        downloads.append(repo_id)
        publish()
        return str(cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    entry = CatalogEntry(f"lora:{REPO}", REPO, TINY)
    options = lora.RunOptions(cache_dir=tmp_path / "adapters", progress=False)

    def must_not_load(**_):
        raise AssertionError("a cache hit must not load weights or train")

    # First run: nothing downloaded yet. The revision is resolved before the key is taken; then it trains.
    first = lora.finetune(entry.load_base, entry.base_fingerprint(), PAIRS, TINY, options=options)
    assert not first.cached and first.info["base"] == {"base": REPO, "weights": f"hub:{COMMIT}"}
    assert downloads == [REPO]
    # Second run: the weights are in the HF cache now; same key, no download.
    second = lora.finetune(must_not_load, entry.base_fingerprint(), PAIRS, TINY, options=options)
    assert second.cached and second.path == first.path and downloads == [REPO]
    # The fingerprint's source cleared (HF cache deleted): resolved from the hub again, the same commit, a hit.
    shutil.rmtree(cache)
    third = lora.finetune(must_not_load, entry.base_fingerprint(), PAIRS, TINY, options=options)
    assert third.cached and third.path == first.path and downloads == [REPO, REPO]


def test_loads_the_commit_its_fingerprint_names(hub):
    _, publish = hub
    publish()
    model, tokenizer, fingerprint = weights.load_pretrained(REPO)
    assert fingerprint == {"base": REPO, "weights": f"hub:{COMMIT}"}
    assert model.config.num_hidden_layers == 2 and len(tokenizer) == model.config.vocab_size


def test_offline_and_not_cached_is_a_clear_error_not_a_placeholder_key(hub):
    with pytest.raises(BackendError, match=rf"cannot resolve the hub revision of '{REPO}'.*hf download {REPO}"):
        CatalogEntry(f"lora:{REPO}", REPO, TINY).base_fingerprint()
