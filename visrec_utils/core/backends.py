"""The execution backends side by side: ``local`` (this process) and ``ray`` (a Ray cluster).

One name per backend (notebook parameter ``backend``, CLI ``--backend``); the Ray work itself
lives beside what it scales: :mod:`visrec_utils.features.ray_extract` (extraction sharded into Ray
tasks) and :mod:`visrec_utils.evaluation.ray_evaluate` (evaluation sharded by users).
"""
from __future__ import annotations

import logging
import os

import numpy as np

#: The backend names, the default first.
BACKENDS = ("local", "ray")


def check_backend(backend: str) -> str:
    """Validate a backend name; raise ValueError naming the choices, ImportError with the
    install command when Ray is asked for and missing."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise ImportError("backend='ray' needs Ray: pip install -e '.[ray]'") from e
    return backend


def _drop_token_enabled_notice(record: logging.LogRecord) -> bool:
    """A logging filter: False for Ray's "Token authentication is enabled for this Ray cluster" notice."""
    return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


def init_ray(address: str | None = None, num_cpus: int | None = None):
    """Connect to ``address`` (or ``$RAY_ADDRESS``), else start a local Ray with ``num_cpus``
    CPUs (default: all). Reuses an already initialised Ray. Returns the ``ray`` module."""
    import ray

    logging.getLogger("ray").setLevel(logging.WARNING)  # Ray's start-up INFO lines are noise in the reports
    # a new local Ray turns token authentication on and says so on stderr, in every notebook's
    # report: that notice goes, the setting stays (and the warning that it is off still shows)
    auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if _drop_token_enabled_notice not in auth.filters:
        auth.addFilter(_drop_token_enabled_notice)
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        kwargs = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False, **kwargs)
        import atexit

        atexit.register(ray.shutdown)  # a clean stop when the notebook kernel exits
    return ray


def shard_points(n_points: int, n_shards: int) -> list[np.ndarray]:
    """Contiguous blocks of test-point positions, as even as possible, ``n_shards`` at most."""
    n_shards = max(1, min(n_shards, n_points)) if n_points else 1
    return [s for s in np.array_split(np.arange(n_points), n_shards) if len(s)]

