from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture
def corpus():
    def load(name: str) -> bytes:
        return (CORPUS / name).read_bytes()

    return load
