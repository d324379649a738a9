"""Fixtures shared by the end-to-end modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.support_profiles import PROFILE_WORKSPACE, ProfileApi, profile_server


@pytest.fixture(scope="session", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def profile_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProfileApi]:
    """One server per backend for every identity, consent and erasure test (starting one is the slow part).

    Tests name their ids and messageIds with their own tag, so they share the server without sharing a profile.
    """
    root = tmp_path_factory.mktemp(f"profiles-{request.param}")
    with profile_server(request.param, root, PROFILE_WORKSPACE) as running:
        yield running
