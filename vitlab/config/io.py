"""Load a config from a Python (or YAML) file, and save one as YAML.

A Python config file is ordinary code (detectron2's LazyConfig files): its module-level configs
(``model``, ``data``, ``optim``, ``train``, ...) become the top-level keys. An experiment imports a
base config and edits attributes. Config files are code: they are only loaded from paths a user names.

Imports inside a config file resolve from the directory above the file's top-level package, and
from the working directory, so ``experiments/foo.py`` (or a file elsewhere, run from the repository)
can say ``from configs.models.hybrid_small_p16 import model``. Every load runs the imported base
files from both places afresh, so an experiment that edits ``model`` never leaks into the next load.

A loaded config is checked: ``train``, ``optim`` and ``data`` are typed (structured configs, see
:mod:`vitlab.config.run`), and every LazyConfig's arguments are parameters of its ``_target_``. A file
that writes a key that does not exist fails to load, with the file and line, the full key and the
closest existing keys: ``experiments/x.py:12: config has no key 'train.max_step'; closest existing
keys: train.max_steps``.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from vitlab.config.overrides import UnknownKeyError, check_keys, rename_old_keys, unknown_key_message
from vitlab.config.run import SECTIONS, typed_sections

__all__ = ["load_config", "save_config"]

_counter = itertools.count()


def _import_root(path: Path) -> Path:
    """The directory that makes the file's package importable (parent of its top-level package)."""
    folder = path.parent
    while (folder / "__init__.py").exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _is_under(module: Any, roots: list[Path]) -> bool:
    """Whether ``module`` is a config module importable from one of ``roots`` (a package or file directly in it)."""
    if module is None:
        return False
    top = module.__name__.split(".")[0]
    file = getattr(module, "__file__", None)
    if top == "vitlab" or not file:
        return False
    for root in roots:
        if (root / top / "__init__.py").exists() or (root / f"{top}.py").exists():
            try:
                if Path(file).resolve().is_relative_to(root):
                    return True
            except OSError:
                pass
    return False


def _exec_python(path: Path) -> dict[str, Any]:
    roots = list(dict.fromkeys([_import_root(path), Path.cwd().resolve()]))
    saved = {name: mod for name, mod in list(sys.modules.items()) if _is_under(mod, roots)}
    for name in saved:
        del sys.modules[name]
    sys.path[:0] = [str(r) for r in roots]
    try:
        spec = importlib.util.spec_from_file_location(f"_vitlab_config_{next(_counter)}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except (ConfigAttributeError, ConfigKeyError, ValidationError) as exc:
            raise _config_file_error(exc, path) from None
    finally:
        for root in roots:
            sys.path.remove(str(root))
        for name, mod in list(sys.modules.items()):
            if _is_under(mod, roots):
                del sys.modules[name]
        sys.modules.update(saved)
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and isinstance(value, (DictConfig, ListConfig, dict))
    }


def _config_file_error(exc: ConfigAttributeError | ConfigKeyError | ValidationError, path: Path) -> Exception:
    """The error of a config file that writes a misspelt key of a typed config (``train.max_step = 5``):
    the file and line that wrote it, the full key and the closest existing keys."""
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    config_frames = [f for f in frames if _is_config_file(f.f_code.co_filename)]
    frame = config_frames[-1] if config_frames else None
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else str(path)
    if frame is not None and frame.f_code.co_filename != str(path):
        where += f" (loading {path})"
    node = getattr(exc, "parent_node", None)
    root = node._get_root() if node is not None else None
    names = {**frame.f_globals, **frame.f_locals} if frame is not None else {}
    # the module-level name of the config the error is in (``train``); item assignment reports a copy
    matches = [n for n, v in names.items() if v is root] or [
        n for n, v in names.items() if isinstance(v, DictConfig) and OmegaConf.get_type(v) is exc.object_type]
    name = next((n for n in matches if not n.startswith("_")), "")
    root = names[name] if name else root if root is not None else DictConfig({})
    key = f"{name}.{exc.full_key}" if name else str(exc.full_key)
    if isinstance(exc, ValidationError):
        return ValueError(f"{where}: config key '{key}': {exc.msg.splitlines()[0]}")
    return UnknownKeyError(f"{where}: {unknown_key_message(root, str(exc.full_key), prefix=name)}")


def _is_config_file(filename: str) -> bool:
    """A frame of a config file, not of omegaconf, the standard library or vitlab itself."""
    file = Path(filename)
    outside = not (file.is_relative_to(_VITLAB) or file.is_relative_to(_STDLIB) or "site-packages" in file.parts)
    return file.suffix == ".py" and outside


_VITLAB = Path(__file__).resolve().parents[1]
_STDLIB = Path(importlib.__file__).resolve().parents[1]


def _typed(cfg: DictConfig, path: Path) -> DictConfig:
    """``cfg`` with typed ``train``/``optim``/``data`` whose LazyConfig arguments all exist, or an
    error naming ``path``."""
    try:
        typed_sections(cfg)
    except ConfigKeyError as exc:
        section = next(k for k in SECTIONS if k in cfg and exc.object_type is SECTIONS[k])
        schema = DictConfig({section: OmegaConf.structured(SECTIONS[section])})
        message = unknown_key_message(schema, f"{section}.{exc.full_key}")
        raise UnknownKeyError(f"{path}: {message}") from None
    try:
        rename_old_keys(cfg)  # a config of an older vitlab (vitlab.compat)
        check_keys(cfg)
    except UnknownKeyError as exc:
        raise UnknownKeyError(f"{path}: {exc}") from None
    return cfg


def load_config(path: str | Path) -> DictConfig:
    """Load a config file: Python (module-level configs become keys) or YAML.

    Args:
        path: a ``.py`` or ``.yaml``/``.yml`` file.

    Returns:
        A ``DictConfig`` with one key per top-level config (``model``, ``train``, ...); its ``train``,
        ``optim`` and ``data`` are typed (:mod:`vitlab.config.run`). A key a class renamed (a saved config
        of an older vitlab: ``model.block_cfg``) takes its new name, with a ``FutureWarning`` (:mod:`vitlab.compat`).

    Raises:
        UnknownKeyError: the file (or a base it runs) writes a key that does not exist, in a typed
            section or as an argument of a LazyConfig; the message names the file and line, the full
            key and the closest existing keys.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {str(path)!r}")
    path = path.resolve()
    if path.suffix == ".py":
        content = _exec_python(path)
        if not content:
            raise ValueError(f"config file {str(path)!r} defines no config (no module-level L(...) or dict)")
        allow_objects = any(
            isinstance(v, DictConfig) and v._get_flag("allow_objects") for v in content.values()
        )
        return _typed(DictConfig(content, flags={"allow_objects": True} if allow_objects else None), path)
    if path.suffix in (".yaml", ".yml"):
        cfg = OmegaConf.load(path)
        if not isinstance(cfg, DictConfig):
            raise ValueError(f"config file {str(path)!r} must hold a mapping at the top, got a list")
        return _typed(cfg, path)
    raise ValueError(f"config file {str(path)!r} must end in .py, .yaml or .yml")


def _check_plain(node: Any, key: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _check_plain(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_plain(v, f"{key}[{i}]")
    elif not (node is None or isinstance(node, (str, int, float, bool))):
        raise ValueError(
            f"config key '{key}' holds {node!r}, which YAML cannot store "
            "(a class defined inside a function?); define it at module level so it imports by name"
        )


def save_config(cfg: DictConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML that ``load_config`` reads back to an equal config."""
    _check_plain(OmegaConf.to_container(cfg, resolve=False), "")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=False))
    tmp.replace(path)
    return path
