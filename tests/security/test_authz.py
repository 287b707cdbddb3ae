from __future__ import annotations

import pytest

from sparkgate.config import AuthSettings, EnvironmentSettings
from sparkgate.errors import PermissionDenied
from sparkgate.security.authz import Authorizer
from sparkgate.security.identity import Identity

ENVS = {"dev": EnvironmentSettings(), "prod": EnvironmentSettings(allowed_groups=["prod-access"])}


def test_team_groups_default_mapping_admins_and_environment_rules() -> None:
    az = Authorizer(AuthSettings(team_groups={"ml": ["ml-eng", "ds"]}, admin_groups=["platform"]), ENVS)
    alice = Identity("alice@x", frozenset({"fe"}), "oidc")
    az.check(alice, "fe", "dev")  # the group named like the team
    with pytest.raises(PermissionDenied, match=r"alice@x may not use team 'ds': .*'ds' \(your groups: fe\)"):
        az.check(alice, "ds", "dev")
    az.check(Identity("d@x", frozenset({"ds"}), "oidc"), "ml", "dev")  # mapped
    with pytest.raises(PermissionDenied, match="environment 'prod'"):
        az.check(alice, "fe", "prod")
    az.check(Identity("a@x", frozenset({"fe", "prod-access"}), "oidc"), "fe", "prod")
    az.check(Identity("root@x", frozenset({"platform", "prod-access"}), "oidc"), "anything", "prod")
    az.check(Identity("claimed"), "any", "prod")  # auth.mode none: nothing to check
