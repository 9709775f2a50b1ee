"""pytest configuration for the fasvd binding (see support.py for how the
library is found and when the tests skip)."""

import pytest

from support import SKIP_REASON, write_fixture


def pytest_report_header(config):
    if SKIP_REASON is not None:
        return "fasvd: every test skipped: %s" % SKIP_REASON
    import fasvd
    return "fasvd: libfasvd %s at %s" % (fasvd.library_version, fasvd.library_path)


@pytest.fixture(scope="session")
def deepseek_dir(tmp_path_factory):
    """The demo model: DeepSeek-V3 layout, FP8 with 128x128 block scales and
    partial edge blocks, 3 shards, 2 layers."""
    return write_fixture(str(tmp_path_factory.mktemp("ds") / "model"))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """A Llama fixture with GQA (4 heads, 2 KV heads), BF16 weights."""
    return write_fixture(str(tmp_path_factory.mktemp("llama") / "model"), arch="llama")
