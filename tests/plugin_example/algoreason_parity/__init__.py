"""An example algoreason plugin living outside the algoreason tree: a task and a model family.

Installing this package adds ``task=parity`` and ``model=coupled`` to ``python -m benchmark`` (its Hydra search-path
plugin, ``hydra_plugins/algoreason_parity_searchpath``, puts ``algoreason_parity/configs`` on
Hydra's config search path) and, once imported, the gymnasium environment
``algoreason_parity/Parity-v0`` (``gymnasium.make("algoreason_parity:algoreason_parity/Parity-v0")``
imports it for you).
"""

from tasks.env import register_task_env

from algoreason_parity.model import CoupledNet
from algoreason_parity.task import ParityTask

register_task_env("algoreason_parity/Parity-v0", "algoreason_parity.task.ParityTask", 16)

__all__ = ["CoupledNet", "ParityTask"]
