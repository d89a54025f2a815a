"""Worker actors' Ray session (``lucidrl.distributed.WorkerSession``), with a stand-in for the ``ray`` module:
a Ray that lucidrl starts for workers is shared by every model's workers and shut down by the last one out; a
session whose Ray someone else shut down (and another model started again) never shuts down the new one."""

import pytest

import lucidrl.distributed as dist


class FakeRay:
    class exceptions:
        RayError = RuntimeError

    def __init__(self):
        self.up, self.starts, self.stops = False, 0, 0

    def is_initialized(self):
        return self.up

    def init(self, **kwargs):
        self.up, self.starts = True, self.starts + 1

    def shutdown(self):
        self.up, self.stops = False, self.stops + 1


@pytest.fixture
def fake(monkeypatch):
    ray = FakeRay()
    monkeypatch.setattr(dist, "require_ray", lambda what="this": ray)
    monkeypatch.setattr(dist.WorkerSession, "started", None)
    monkeypatch.setattr(dist.WorkerSession, "users", 0)
    return ray


def test_the_last_session_out_shuts_down_the_ray_lucidrl_started(fake):
    a = dist.WorkerSession(None, 2, "test")
    b = dist.WorkerSession(None, 2, "test")
    assert (fake.starts, dist.WorkerSession.users) == (1, 2)
    a.close()
    a.close()  # twice: counted once
    assert fake.up and dist.WorkerSession.users == 1
    b.close()
    assert not fake.up and fake.stops == 1 and dist.WorkerSession.users == 0


def test_a_users_own_ray_is_never_shut_down(fake):
    fake.up = True  # the user's ray.init
    a = dist.WorkerSession(None, 2, "test")
    a.close()
    assert fake.up and fake.stops == 0


def test_a_stale_session_leaves_the_ray_another_model_started_running(fake):
    a = dist.WorkerSession(None, 2, "test")
    fake.shutdown()  # the user's ray.shutdown() while a's workers were held
    b = dist.WorkerSession(None, 2, "test")  # starts a new one
    assert fake.starts == 2 and fake.up
    a.close()
    assert fake.up and dist.WorkerSession.users == 1  # b's Ray still runs
    b.close()
    assert not fake.up
