# Load the peer fixtures for tests in this directory, unless tests/conftest.py already
# registered them suite-wide via pytest_plugins = ["tests.peers.fixtures"].
import sys

if "tests.peers.fixtures" not in sys.modules:
    from .fixtures import *  # noqa: F403
