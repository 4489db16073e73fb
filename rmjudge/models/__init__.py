"""Models: the registry of RM-R1 checkpoints, download from the hub, the local cache.

``--model`` takes an alias from the registry (``registry.json`` in this package, with the user's
``<config dir>/registry.json`` merged over it), ``hf://owner/repo[/file.gguf][@revision]`` for any
GGUF on the hub, or a path to a ``.gguf`` file. Pulled files live in the Hugging Face hub cache in
its own layout, so other tools see them; a pulled model resolves with no network at all.

The modules, each one job: ``registry`` (the aliases), ``naming`` (what file and repository names
say), ``spec`` (what ``--model`` names), ``environment`` (the HF_* variables), ``hubcache`` (the
cache on disk), ``hashing`` (the sha256 memo), ``hub`` (hub calls and their errors), ``locate``
(which file on the hub), ``download`` (the resumable verified download), ``resolved`` (the
ResolvedModel record), ``resolve`` and ``catalog`` (the public functions below).
"""

from rmjudge.models.catalog import LocalModel, list_models, remove_model, search_models
from rmjudge.models.hashing import file_sha256
from rmjudge.models.hub import HubModel
from rmjudge.models.naming import quant_of
from rmjudge.models.registry import registry
from rmjudge.models.resolve import model_info, pull_model, resolve_model
from rmjudge.models.resolved import ResolvedModel
from rmjudge.models.spec import check_model_spec
from rmjudge.system import memory_warning

__all__ = [
    "HubModel",
    "LocalModel",
    "ResolvedModel",
    "check_model_spec",
    "file_sha256",
    "list_models",
    "memory_warning",
    "model_info",
    "pull_model",
    "quant_of",
    "registry",
    "remove_model",
    "resolve_model",
    "search_models",
]
