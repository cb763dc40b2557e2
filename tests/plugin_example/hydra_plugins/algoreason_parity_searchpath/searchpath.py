"""Hydra finds this plugin by scanning the ``hydra_plugins`` namespace package at start-up.

It appends the plugin's config directory to the search path, so its ``task/parity.yaml`` (and
``train/parity.yaml``) join the config groups of ``python -m benchmark``. Keep this module
light: Hydra imports every plugin module on every start.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class AlgoreasonParitySearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="algoreason-parity", path="pkg://algoreason_parity.configs")
