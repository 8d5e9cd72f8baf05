"""Shared fixtures: one in-process chain per session, the stack deployed once, a snapshot per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from app.chain.client import ChainClient
from app.chain.escrow import Deployment, Escrow, deploy_stack
from tests.factories import Actors, OrderFactory

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def chain() -> Iterator[ChainClient]:
    client = ChainClient.embedded()
    yield client
    client.close()


@pytest.fixture(scope="session")
def actors(chain: ChainClient) -> Actors:
    return Actors.from_accounts(chain.dev_accounts(len(Actors.__dataclass_fields__)))


@pytest.fixture(scope="session")
def deployment(chain: ChainClient, actors: Actors) -> Deployment:
    return deploy_stack(
        chain,
        admin=actors.admin,
        treasury=actors.treasury.address,
        oracles=[actors.oracle1.address, actors.oracle2.address, actors.oracle3.address],
        arbitrators=[actors.arbitrator.address],
        regulators=[actors.regulator.address],
        tax_recipients={actors.tax.address: 5000},
    )


@pytest.fixture(autouse=True)
def _isolate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that uses the chain starts from the freshly deployed stack."""
    if "deployment" not in request.fixturenames and "factory" not in request.fixturenames:
        yield
        return
    chain: ChainClient = request.getfixturevalue("chain")
    dep: Deployment = request.getfixturevalue("deployment")
    snap = chain.snapshot()
    tracked = dict(dep.escrow.orders)
    yield
    chain.revert(snap)
    dep.escrow.orders.clear()
    dep.escrow.orders.update(tracked)


@pytest.fixture
def escrow(deployment: Deployment) -> Escrow:
    return deployment.escrow


@pytest.fixture
def factory(chain: ChainClient, deployment: Deployment, actors: Actors) -> OrderFactory:
    return OrderFactory(chain, deployment.escrow, deployment.token, actors)


pytest_plugins = ["tests.service_fixtures"]
