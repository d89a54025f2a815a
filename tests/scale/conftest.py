"""One local Ray instance (2 CPUs, no dashboard, no login token) for every test in tests/scale/.

Library code that finds Ray already initialised uses this session and leaves it running
(``lucidrl.distributed.ray_session``); the fixture shuts it down after the last test.
"""

import os

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_local():
    os.environ["RAY_AUTH_MODE"] = "disabled"
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
