"""Save and share a network: ``save_pretrained``, ``from_pretrained`` and ``push_to_hub``.

A pretrained folder (or Hub repository) holds the files of huggingface_hub's ``PyTorchModelHubMixin``:

    model.safetensors   the state dict (tensors only: nothing is unpickled on load)
    config.json         the network's LazyConfig as data, ``{"_target_": "vitlab.models.vit.HybridViT",
                        "dim": 384, "layer_types": {"H": {"_target_": "vitlab.models.block.Block", ...}},
                        ...}``
    README.md           a model card (:mod:`vitlab.hub.model_card`)

``from_pretrained`` rebuilds the network with :func:`vitlab.config.instantiate` from ``config.json`` and loads
``model.safetensors`` strictly. ``config.json`` may come from anyone's Hub repository, so before anything is
built every ``_target_`` in it must name a class in an allowed package (``vitlab.`` unless the caller allows
more): a config that names a function (``os.system``) or a foreign class is refused.

Why not ``PyTorchModelHubMixin`` itself: its config is the constructor's JSON-able arguments, so LazyConfig
arguments (``norm_layer``, ``layer_types``) are dropped unless coders are registered; it rebuilds with
``cls(**config)``, so no ``_target_`` is kept, used or checked; it loads ``strict=False`` by default (a
mismatched file half-loads silently) and prints; and it would make huggingface_hub an import of every
model. This mixin keeps its interface and file names, and imports huggingface_hub only to download or push.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vitlab.compat import renamed_args_of
from vitlab.config import ConfigInstantiationError, L, UnknownKeyError, check_keys, instantiate, rename_old_keys
from vitlab.hub.model_card import model_card

__all__ = ["PretrainedMixin", "PretrainedFileError", "read_config", "CONFIG_NAME", "WEIGHTS_NAME",
           "MODEL_CARD_NAME", "ALLOWED_TARGETS"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
ALLOWED_TARGETS = ("vitlab.",)  # packages whose classes a downloaded config.json may name
_REPO_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


class PretrainedFileError(ValueError):
    """A pretrained folder's file is unreadable or does not fit; the message starts with the file's path."""


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a network built from a LazyConfig.

    The network remembers the arguments of its constructor (``L(HybridViT)(...)`` means exactly
    ``HybridViT(...)``, so they are its config): ``save_pretrained`` needs no config to be given.
    """

    def __new__(cls, *args: Any, **kwargs: Any):
        instance = super().__new__(cls)
        # Kept outside nn.Module's attribute machinery; the class is recorded here because wrappers such as
        # FSDP2's fully_shard swap the instance's class for a generated subclass.
        object.__setattr__(instance, "_pretrained_init", (cls, args, dict(kwargs)))
        return instance

    def pretrained_config(self) -> DictConfig:
        """The LazyConfig of this network: its constructor's arguments, without ``device`` and ``dtype``.

        Raises:
            ValueError: the network was built with positional arguments.
        """
        cls, args, kwargs = getattr(self, "_pretrained_init", (type(self), (), {}))
        if args:
            raise ValueError(f"{cls.__name__} was built with positional arguments; pass save_pretrained(config=...)")
        renamed = renamed_args_of(cls)  # built with an old keyword (vitlab.compat): saved by its new name
        try:
            return L(cls)(**{renamed.get(k, k): v for k, v in kwargs.items() if k not in ("device", "dtype")})
        except Exception as exc:  # noqa: BLE001 - omegaconf refuses objects (a factory, a class) as values
            raise ValueError(f"{cls.__name__} was built with an argument a config cannot hold ({exc}); build it from "
                             "LazyConfigs (L(...)) or pass save_pretrained(config=...)") from None

    def save_pretrained(self, save_directory: str | os.PathLike, *, config: Any = None,
                        training_config: Any = None, eval_results: Mapping[str, Any] | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` into ``save_directory``.

        Args:
            save_directory: the folder (created if needed; its files of these names are replaced).
            config: the network's LazyConfig (``DictConfig`` or dict with ``_target_``); default
                :meth:`pretrained_config`. It must rebuild this network: same tensor names and shapes.
            training_config: the run's config (YAML text, ``DictConfig`` or dict), shown in the model card.
            eval_results: evaluation name -> result dict (a ``vitlab eval`` JSON), shown in the model card.

        Returns:
            The folder.

        Raises:
            ValueError: the config holds values JSON cannot store, or describes another network; or the
                weights are on the meta device.
        """
        folder = Path(save_directory)
        return self._write_pretrained(folder, config, training_config, eval_results, repo=str(folder))

    def _write_pretrained(self, folder: Path, config: Any, training_config: Any,
                          eval_results: Mapping[str, Any] | None, repo: str) -> Path:
        from safetensors.torch import save_file

        data = _as_data(self.pretrained_config() if config is None else config)
        state = self.state_dict()
        if any(t.is_meta for t in state.values()):
            raise ValueError("save_pretrained: the network is on the meta device; it has no weights to save")
        _check_rebuilds(data, state)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        _write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
        _write(folder / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
        card = model_card(self, data, training_config=training_config, eval_results=eval_results, repo=repo)
        _write(folder / MODEL_CARD_NAME, lambda tmp: tmp.write_text(card))
        return folder

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, device: Any = None,
                        dtype: torch.dtype | None = None, allowed_targets: Sequence[str] = ALLOWED_TARGETS,
                        revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                        force_download: bool = False, local_files_only: bool = False, token: str | bool | None = None,
                        **overrides: Any):
        """Rebuild a network from a pretrained folder or a Hub repository, in eval mode.

        Args:
            pretrained_model_name_or_path: a folder written by :meth:`save_pretrained` (or ``vitlab export``),
                or a Hub repo id (``user/name``), downloaded with ``huggingface_hub.hf_hub_download``.
            device: where to build the parameters; ``"meta"`` builds from ``config.json`` alone (no weights
                read or downloaded), e.g. to count FLOPs.
            dtype: parameter dtype (default float32; the file's tensors are cast).
            allowed_targets: package prefixes whose classes ``config.json`` may name.
            revision, cache_dir, force_download, local_files_only, token: passed to ``hf_hub_download``.
            **overrides: constructor arguments replacing the config's, ones that keep the tensors
                (``kernels="torch"``, ``max_drop_path_rate=0.1``).

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            PretrainedFileError: ``config.json`` or ``model.safetensors`` is unreadable, names a class outside
                ``allowed_targets``, or does not fit; the message names the file.
        """
        hub = dict(revision=revision, cache_dir=cache_dir, force_download=force_download,
                   local_files_only=local_files_only, token=token)
        config_path = _resolve(pretrained_model_name_or_path, CONFIG_NAME, hub)
        data = read_config(config_path, allowed_targets, expected=cls)
        try:
            config = rename_old_keys(OmegaConf.create(data))  # a config.json of an older vitlab (vitlab.compat)
            check_keys(config)
            model = instantiate(config, device=device, dtype=dtype, **overrides)
        except (UnknownKeyError, ConfigInstantiationError) as exc:
            raise PretrainedFileError(f"{config_path}: {exc}") from None
        model.eval()
        if device is not None and torch.device(device).type == "meta":
            return model
        weights_path = _resolve(pretrained_model_name_or_path, WEIGHTS_NAME, hub)
        state = _read_weights(weights_path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise PretrainedFileError(f"{weights_path}: does not fit the network {config_path} describes: "
                                      f"{exc}") from None
        return model

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload vitlab model", private: bool | None = None,
                    token: str | None = None, branch: str | None = None, create_pr: bool | None = None,
                    config: Any = None, training_config: Any = None,
                    eval_results: Mapping[str, Any] | None = None) -> str:
        """:meth:`save_pretrained` into a temporary folder and upload it as one commit (as the mixin does).

        Args:
            repo_id: ``user/name``; created (public unless ``private``) if it does not exist.
            commit_message, private, token, branch, create_pr: as ``huggingface_hub.HfApi``'s
                ``create_repo`` and ``upload_folder``.
            config, training_config, eval_results: as :meth:`save_pretrained`.

        Returns:
            The commit's URL.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self._write_pretrained(Path(tmp), config, training_config, eval_results, repo=repo_id)
            return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=tmp,
                                     commit_message=commit_message, revision=branch, create_pr=create_pr)


def read_config(path: str | os.PathLike, allowed_targets: Sequence[str] = ALLOWED_TARGETS,
                expected: type | None = None) -> dict:
    """The LazyConfig in a ``config.json``, its every ``_target_`` checked (nothing is built).

    Args:
        path: the file.
        allowed_targets: package prefixes (``"vitlab."``) the classes it names must start with.
        expected: a class the top-level ``_target_`` must be (a subclass of).

    Raises:
        PretrainedFileError: not JSON, no ``_target_`` at the top, or a ``_target_`` that is not a class under
            ``allowed_targets`` (or not ``expected``), naming the file and the key.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PretrainedFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("_target_"), str):
        raise PretrainedFileError(f"{path}: holds no LazyConfig (a JSON object with a '_target_')")
    top = _check_targets(data, tuple(allowed_targets), path, "")
    if expected is not None and not issubclass(top, expected):
        raise PretrainedFileError(f"{path}: describes a {data['_target_']}, not a {expected.__module__}."
                                  f"{expected.__qualname__}")
    return data


def _check_targets(node: Any, allowed: tuple[str, ...], path: Path, key: str) -> type | None:
    """Every ``_target_`` under ``node`` names a class under ``allowed``; the class of ``node``'s own."""
    found = None
    if isinstance(node, dict):
        if "_target_" in node:
            found = _target_class(node["_target_"], allowed, path, key or "<root>")
        for k, v in node.items():
            _check_targets(v, allowed, path, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_targets(v, allowed, path, f"{key}[{i}]")
    return found


def _target_class(target: Any, allowed: tuple[str, ...], path: Path, key: str) -> type:
    where = f"{path}: config key '{key}'"
    if not isinstance(target, str) or not target.startswith(allowed):
        raise PretrainedFileError(f"{where} has _target_ {target!r}, outside the allowed packages {list(allowed)} "
                                  "(from_pretrained(..., allowed_targets=...) allows more)")
    module_name, _, name = target.rpartition(".")
    try:
        obj = importlib.import_module(module_name)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PretrainedFileError(f"{where} has _target_ {target!r}, which does not import ({exc})") from None
    if not inspect.isclass(obj):
        raise PretrainedFileError(f"{where} has _target_ {target!r}, which is not a class")
    return obj


def _as_data(config: Any) -> dict:
    """``config`` as plain JSON-able data with a top-level ``_target_``."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if not isinstance(config, Mapping) or "_target_" not in config:
        raise ValueError(f"save_pretrained: config must be a LazyConfig (a mapping with '_target_'), got {config!r}")
    _check_json(config, "")
    return json.loads(json.dumps(config))  # tuples become lists, as they read back


def _check_json(node: Any, key: str) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            _check_json(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _check_json(v, f"{key}[{i}]")
    elif not (node is None or isinstance(node, (str, int, float, bool))):
        raise ValueError(f"save_pretrained: config key '{key}' holds {node!r}, which config.json cannot store; "
                         "give a LazyConfig (L(...)) for it")


def _check_rebuilds(data: dict, state: Mapping[str, torch.Tensor]) -> None:
    """The config, built on the meta device, has ``state``'s tensor names and shapes."""
    shapes = {k: tuple(v.shape) for k, v in instantiate(data, device="meta").state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != given:
        diff = sorted(set(shapes.items()) ^ set(given.items()))[:6]
        raise ValueError(f"save_pretrained: the config describes another network than this one; first "
                         f"differences (name, shape): {diff}")


def _write(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``: a crash leaves the previous file, never half of one."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _resolve(source: str | os.PathLike, filename: str, hub: dict) -> Path:
    """``source/filename`` for a folder; else the file downloaded from the Hub repo ``source``."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (a pretrained folder holds {CONFIG_NAME} and "
                                    f"{WEIGHTS_NAME}: save_pretrained or `vitlab export` writes one)")
        return path
    if folder.exists() or not _REPO_ID.match(str(source)):
        raise FileNotFoundError(f"{str(source)!r} is neither a pretrained folder nor a Hub repo id (user/name)")
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=str(source), filename=filename, **hub))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: a truncated or foreign file
        raise PretrainedFileError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
