"""uvicorn's server and its configuration, without uvicorn's command line.

``import uvicorn`` runs the package's ``__init__``, which imports ``uvicorn.main`` to offer ``run`` and
``main``: click and the reload and multiprocess supervisors, which the daemon never uses (about 3 %
of the instructions of a start with one playbook). So when nothing in the process has imported uvicorn
yet, its package is registered without running ``__init__`` and given the two names the daemon and
uvicorn's own modules take from it (``Config``, ``Server``); the first other name asked of it
(``run``, ``main``, ``__version__``, ...) runs the real ``__init__`` on it, so whoever else uses
uvicorn in the process finds the whole package. When uvicorn is already imported, it is used as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any


def _register_without_cli() -> None:
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None:  # pragma: no cover - not an ordinary package: import it
        return
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)
    completing = threading.Lock()

    def complete(name: str) -> Any:
        """The rest of the package, on the first name it does not have yet."""
        with completing:
            # once (another thread may have done it meanwhile); and the real __init__ may look
            # names up on the package itself while it runs
            if package.__dict__.pop("__getattr__", None) is not None:
                loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = complete
    sys.modules["uvicorn"] = package
    try:
        config = importlib.import_module("uvicorn.config")
        server = importlib.import_module("uvicorn.server")
    except BaseException:
        for name in [m for m in sys.modules if m == "uvicorn" or m.startswith("uvicorn.")]:
            del sys.modules[name]
        raise
    package.__dict__.update(Config=config.Config, Server=server.Server)


_register_without_cli()

from uvicorn.config import Config  # noqa: E402
from uvicorn.server import Server  # noqa: E402

__all__ = ["Config", "Server"]
