# Load the peer fixtures for tests in this directory, unless tests/conftest.py already
# registered them suite-wide (pytest_plugins = ["tests.peers.fixtures"] or ["peers.fixtures"]).
import sys

if not {"tests.peers.fixtures", "peers.fixtures"} & set(sys.modules):
    from .fixtures import *  # noqa: F403
