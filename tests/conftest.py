"""Settings the test process needs before any test module is imported."""

import os

# Ray reads its authentication mode once per process, when it first starts a driver: the tests
# that join a cluster started by `ray start` (token authentication, Ray's default) need it on
# from the start, as an app joining such a cluster does (README, "Pipelines on a Ray cluster").
os.environ.setdefault("RAY_AUTH_MODE", "token")
