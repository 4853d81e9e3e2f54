"""The evaluated model behind a real OpenAI-compatible server on 127.0.0.1, for serving benchmarks.

`prepare_served_folder` writes the model exactly as evaluated (the base weights, or base + LoRA adapter merged, in the
dtype they were evaluated in) as a plain transformers folder, once per (base, adapter): `transformers serve` has no
adapter support. Its generation config is greedy with the EOS ids HFModel stops at.

`LocalServer` runs `transformers serve` (CPU) or `vllm serve` (GPU; it applies the adapter itself) on a free port
and always stops the whole process group, whatever ends the `with` block.

Both servers have a text completions endpoint (`/v1/completions`) that tokenizes the prompt exactly as HFModel does
(`tokenizer(text)`, special tokens as the tokenizer adds them), so the served model sees the evaluated prompt text
with no chat template in between.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import BackendError, ConfigError, MissingDependencyError
from models.weights import cache_root

SERVED_FOLDER_VERSION = 1  # bump when the folder's contents change for the same base and adapter
HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class ServedFolder:
    """A model folder a server can load, and what it holds."""

    path: Path
    key: str
    """sha256 of the base fingerprint, the adapter's weights sha256 and SERVED_FOLDER_VERSION."""
    fingerprint: dict[str, Any]
    cached: bool
    """True when the folder was already there (nothing was loaded or written)."""


def served_folders() -> Path:
    """Where served folders are cached: $FTBENCH_SERVED_CACHE, else <ftbench cache>/served."""
    return Path(os.environ.get("FTBENCH_SERVED_CACHE") or cache_root() / "served")


def prepare_served_folder(entry, adapter: Path | None = None, *, root: Path | None = None) -> ServedFolder:
    """The folder for a catalog entry's weights (`CatalogEntry`), with `adapter` merged in when given.

    Built once: later calls with the same base fingerprint and adapter weights return the cached folder. A quantized
    base is refused (merging rounds the adapter onto the quantized grid, so the served model would not be the
    evaluated one): serve it with vLLM, which applies the adapter beside the base.
    """
    quantization = entry.recipe.quantization if entry.recipe else None
    if quantization is not None:
        raise ConfigError(f"{entry.name}: a {quantization} base cannot be merged with its adapter for "
                          f"`transformers serve`; serve it with vLLM (LocalServer(engine='vllm', adapter=...)).")
    fingerprint = entry.base_fingerprint() | {"adapter_sha256": _adapter_sha256(adapter) if adapter else None}
    key = hashlib.sha256(json.dumps([fingerprint, SERVED_FOLDER_VERSION], sort_keys=True).encode()).hexdigest()
    target = (root or served_folders()) / key[:24]
    if (target / "ftbench.json").exists():
        return ServedFolder(target, key, fingerprint, cached=True)
    _write_folder(entry, adapter, target, {"key": key, "fingerprint": fingerprint})
    return ServedFolder(target, key, fingerprint, cached=False)


def _adapter_sha256(adapter: Path) -> str:
    from models.finetune.lora import weights_sha256

    try:
        return weights_sha256(adapter)
    except OSError as err:
        raise ConfigError(f"cannot read the adapter's weights in {adapter}: {err}. Pass a folder saved by "
                          f"ftbench's fine-tuning (it holds adapter_model.safetensors).") from err


def _write_folder(entry, adapter: Path | None, target: Path, info: dict[str, Any]) -> None:
    """Save the merged model to a temporary folder, then rename it: a killed run never leaves a folder that looks
    complete (ftbench.json is written last, inside the temporary folder)."""
    from models.hf import _eos_ids

    model, tokenizer, _ = entry.load_base()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.generation_config = _greedy_config(model, tokenizer, _eos_ids(model, tokenizer))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "ftbench.json").write_text(json.dumps(info, indent=1))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "ftbench.json").exists():  # not a race lost to another process: a real failure
                raise
    finally:  # whatever stopped the save (Ctrl-C included), no half-written folder stays behind
        shutil.rmtree(staging, ignore_errors=True)


def _greedy_config(model, tokenizer, eos_ids: set[int]):
    """Greedy decoding that stops where HFModel stops; nothing else from the base's own generation config (a
    repetition penalty or sampling default there would change the server's answers, not HFModel's)."""
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids, default=None)
    return GenerationConfig(do_sample=False, eos_token_id=sorted(eos_ids), pad_token_id=pad,
                            bos_token_id=model.config.bos_token_id)


class LocalServer:
    """An OpenAI-compatible server on 127.0.0.1 at a free port, for the length of a `with` block.

        with LocalServer(folder.path) as server:
            sweep(server.base_url, server.model_id, prompts, ...)

    `engine` is 'transformers' (`transformers serve`, CPU or GPU, one model folder) or 'vllm' (`vllm serve`, GPU;
    `adapter` is served as a LoRA module and requests name it). The log goes to `log_path` (default: a new temporary
    file, kept after the server stops). Leaving the block, by any exception or Ctrl-C, stops the process group:
    SIGTERM, then SIGKILL after `stop_grace_s`. On Linux the server also gets SIGTERM if this process dies.
    """

    def __init__(self, model: str | Path, *, engine: str = "transformers", adapter: Path | None = None,
                 device: str = "cpu", dtype: str = "auto", extra_args: Sequence[str] = (),
                 log_path: Path | None = None, start_timeout_s: float = START_TIMEOUT_S,
                 stop_grace_s: float = STOP_GRACE_S, max_lora_rank: int = 64):
        if engine not in ("transformers", "vllm"):
            raise ConfigError(f"unknown serving engine {engine!r}; use 'transformers' or 'vllm'.")
        if adapter is not None and engine != "vllm":
            raise ConfigError(f"`transformers serve` cannot apply the adapter {adapter}: merge it into a served "
                              f"folder with prepare_served_folder(entry, adapter), or use engine='vllm'.")
        self.model, self.engine, self.adapter = str(model), engine, adapter
        self.device, self.dtype, self.extra_args = device, dtype, tuple(extra_args)
        self.max_lora_rank = max_lora_rank
        self.log_path = log_path  # None: a new temporary file, made at start
        self.start_timeout_s, self.stop_grace_s = start_timeout_s, stop_grace_s
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    # --- what callers use --------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def model_id(self) -> str:
        """The `model` field requests must carry: the adapter's LoRA module on vLLM, else the served model."""
        if self.engine == "vllm":
            return "adapter" if self.adapter is not None else "model"
        return self.model  # `transformers serve MODEL` answers only for MODEL, named as on its command line

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "(no log: the server was never started)"
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as err:
            return f"(no log at {self.log_path}: {err})"

    def failure(self) -> str | None:
        """Why the server is not running (exit status and last log lines), or None while it runs: after a sweep
        that lost the server, the message for the user."""
        if self.process is None:
            return f"{self.engine} serve was never started"
        if self.alive():
            return None
        return (f"{self.engine} serve {self.model} exited with status {self.process.returncode}; last lines of "
                f"{self.log_path}:\n{self.log_tail()}")

    # --- lifetime ----------------------------------------------------------------------------------------------

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until GET /v1/models answers; on any failure (Ctrl-C included) stop it."""
        self.port = free_port()
        command = self.command()
        _check_installed(self.engine, command[0])
        self.log_path = self.log_path or _temporary_log(self.engine)
        with self.log_path.open("w") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                env=os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"})
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM to the whole process group (vLLM's workers too), SIGKILL after the grace period; idempotent."""
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also after a second Ctrl-C during the grace period
            _signal_group(process.pid, signal.SIGKILL)  # children that outlived their leader, or a leader ignoring TERM
            process.wait()

    def command(self) -> list[str]:
        """The server's command line for the chosen port."""
        common = ["--host", HOST, "--port", str(self.port), "--dtype", self.dtype]
        if self.engine == "transformers":
            return [_executable("transformers"), "serve", self.model, *common, "--device", self.device,
                    *self.extra_args]
        # vLLM: greedy requests (temperature 0) with vLLM's own defaults, not the folder's sampling defaults.
        command = [_executable("vllm"), "serve", self.model, *common, "--served-model-name", "model",
                   "--seed", "0", "--generation-config", "vllm"]
        if self.adapter is not None:
            command += ["--enable-lora", "--lora-modules", f"adapter={self.adapter}",
                        "--max-lora-rank", str(self.max_lora_rank)]
        return command + list(self.extra_args)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if not self.alive():
                raise BackendError(f"the server exited before answering {url}. {self.failure()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        raise BackendError(f"{self.engine} serve did not answer {url} within {self.start_timeout_s:g} s (raise "
                           f"start_timeout_s for a larger model); last lines of {self.log_path}:\n{self.log_tail()}")


def _temporary_log(engine: str) -> Path:
    descriptor, name = tempfile.mkstemp(prefix=f"ftbench-{engine}-serve-", suffix=".log")
    os.close(descriptor)
    return Path(name)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _executable(name: str) -> str:
    """The console script next to this Python (the same environment), else the name (looked up on PATH)."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def _check_installed(engine: str, executable: str) -> None:
    extra = "ftbench[serving]" if engine == "transformers" else "ftbench[vllm]"
    if not Path(executable).exists() and shutil.which(executable) is None:
        raise MissingDependencyError(f"no `{executable}` command next to {sys.executable} or on PATH: "
                                     f"pip install '{extra}'.")
    if engine == "transformers":
        missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependencyError(f"`transformers serve` needs {', '.join(missing)}: pip install '{extra}'.")


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass
