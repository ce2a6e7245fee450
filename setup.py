"""Packaging beyond what pyproject.toml can say: the model presets ship inside the wheel.

``configs/models/*.py`` (the ``L(HybridViT)`` presets; they import each other as ``configs.models.x``)
are copied to ``vitlab/presets/configs/models/``, as detectron2's ``model_zoo`` ships its configs, so
an installed vitlab builds every preset (``vitlab.config.load_model_preset``, ``import vitlab.timm``).
They are config files loaded by path, not modules to import: ``vitlab/presets`` has no ``__init__.py``.
The checkout keeps one copy, ``configs/models/``, where experiments and tests import it from.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["vitlab*"]) + ["vitlab.presets.configs", "vitlab.presets.configs.models"],
    package_dir={"vitlab.presets.configs": "configs"},
)
