"""Authorization: may this identity use team T in environment E?

Rules (``auth`` and ``environments`` settings):

* a team may be used by members of the groups ``auth.team_groups[team]`` names — by default, of
  the group with the team's own name; members of ``auth.admin_groups`` may use every team;
* an environment with ``allowed_groups`` is further limited to members of one of them
  (``prod: {allowed_groups: [prod-access]}``).

With ``auth.mode: none`` nothing is checked (there is no verified identity to check).
"""

from __future__ import annotations

from collections.abc import Mapping

from sparkgate.config import AuthSettings, EnvironmentSettings
from sparkgate.errors import PermissionDenied
from sparkgate.security.identity import Identity

#: The group of the platform's own services (the runner): they act for users already authorized.
PLATFORM_GROUP = "sparkgate:platform"


class Authorizer:
    def __init__(self, settings: AuthSettings, environments: Mapping[str, EnvironmentSettings]) -> None:
        self.settings = settings
        self.environments = environments

    def groups_for_team(self, team: str) -> list[str]:
        return self.settings.team_groups.get(team, [team])

    def check(self, who: Identity, team: str, environment: str) -> None:
        """Raise :class:`PermissionDenied` saying what is missing, or return."""
        if not who.verified or PLATFORM_GROUP in who.groups:
            return
        groups = who.groups
        mine = ", ".join(sorted(groups)) or "none"
        if not groups.intersection(self.settings.admin_groups):
            allowed = self.groups_for_team(team)
            if not groups.intersection(allowed):
                raise PermissionDenied(
                    f"{who.subject} may not use team {team!r}: that needs membership in "
                    f"{' or '.join(repr(g) for g in allowed)} (your groups: {mine})"
                )
        env = self.environments.get(environment)
        if env is not None and env.allowed_groups and not groups.intersection(env.allowed_groups):
            raise PermissionDenied(
                f"{who.subject} may not use environment {environment!r}: it is limited to members of "
                f"{' or '.join(repr(g) for g in env.allowed_groups)} (your groups: {mine})"
            )
