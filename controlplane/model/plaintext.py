"""Which ports of a workload must refuse plaintext because its AuthorizationPolicies could not admit it.

AuthorizationPolicy is enforced by the node Envoy, on HBONE. Plaintext that reaches a PERMISSIVE pod
straight from an unmeshed client passes no Envoy, so nothing would check it. The only thing that sees it is
the inbound hook in the kernel, which knows the destination (pod IP and port) and nothing of the caller but
its address: it can refuse every plaintext connection to a port (as for STRICT), or none.

So a port refuses plaintext unless every plaintext caller on it would be allowed by `authorize()`: a caller
with no principal and no namespace, whose address and requests the kernel cannot check. Evaluating such a
caller as TCP with the reference evaluator gives exactly that, failing closed:
- an ALLOW rule with L7 fields matches nothing on TCP (so it admits no plaintext), and a DENY rule keeps
  only its L4 fields (so it matches every request its L7 fields could have matched, and more);
- `principals`/`namespaces` (and `source.principal`/`source.namespace` values) never match a caller with
  no identity, their `not` forms always do;
- source-IP fields are dropped the way RBAC drops them (`controlplane.translate.rbac`): an ALLOW rule that
  uses them admits nothing (the kernel cannot check the address), a DENY rule matches on its other fields.
The answer depends on the port only through the ports the policies name (`to.ports`, `notPorts`,
`destination.port`): every other port gets the workload's default answer.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    ConditionKey,
    Request,
    WorkloadPolicies,
    authorize,
)

# Never read: no rule that could read it is evaluated (see `_for_plaintext`).
_NO_ADDRESS = "0.0.0.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaintextAuthorization:
    """Whether a workload's authorization refuses plaintext: on every port not listed (`refused`), and on the
    listed ports, whose answer differs from it (sorted by port)."""

    refused: bool = False
    ports: tuple[tuple[int, bool], ...] = ()

    def refuses(self, port: int | None) -> bool:
        """Whether plaintext to `port` (None: the workload's default) must be refused."""
        if port is not None:
            for named, refused in self.ports:
                if named == port:
                    return refused
        return self.refused


PLAINTEXT_ADMITTED = PlaintextAuthorization()


def _for_plaintext(policy: AuthorizationPolicy) -> AuthorizationPolicy:
    """The policy as it applies to a caller whose address is unknown: ALLOW rules that need the address
    are left out (the policy itself stays, so it still makes the workload default-deny), DENY and AUDIT
    rules lose their address fields (they match more)."""
    if not any(rule.uses_source_ip for rule in policy.rules):
        return policy
    if policy.action is AuthorizationAction.ALLOW:
        rules = tuple(rule for rule in policy.rules if not rule.uses_source_ip)
    else:
        rules = tuple(rule.without_source_ip() for rule in policy.rules)
    return dataclasses.replace(policy, rules=rules)


def _named_ports(policies: Iterable[AuthorizationPolicy]) -> set[int]:
    named: set[int] = set()
    for policy in policies:
        for rule in policy.rules:
            for operation in rule.operations:
                named.update(operation.ports)
                named.update(operation.not_ports)
            for condition in rule.conditions:
                if condition.key is ConditionKey.DESTINATION_PORT:
                    named.update(v for v in (*condition.values, *condition.not_values) if isinstance(v, int))
    return named


def authorize_plaintext(policies: WorkloadPolicies) -> PlaintextAuthorization:
    """Where the workload's authorization (`controlplane.model.security.policies_for`) must refuse plaintext
    from unauthenticated callers, port by port; see the module docstring."""
    if not policies.allow and not policies.deny:
        return PLAINTEXT_ADMITTED  # AUDIT never changes the outcome
    relevant = WorkloadPolicies(
        deny=tuple(_for_plaintext(p) for p in policies.deny),
        allow=tuple(_for_plaintext(p) for p in policies.allow),
    )
    named = _named_ports((*relevant.deny, *relevant.allow))

    def refused(port: int) -> bool:
        caller = Request(principal=None, source_ip=_NO_ADDRESS, destination_port=port)
        return not authorize(relevant, caller).allowed

    # Stands for every port no policy names: they all get the same answer.
    unnamed = next(p for p in itertools.count() if p not in named)
    default = refused(unnamed)
    ports = tuple((port, answer) for port in sorted(named) if (answer := refused(port)) is not default)
    return PlaintextAuthorization(refused=default, ports=ports)
