"""Fixtures for the tests of the shared kernel (core): those of tests/security (a private cache, fast password
hashing) and of tests/api (an API client), which the tests moved here were written with."""
from tests.api.conftest import api  # noqa: F401
from tests.security.conftest import fast_passwords, private_cache  # noqa: F401
