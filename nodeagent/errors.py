"""Errors of the node agent: one root, `AgentError`; data path errors keep their own root (DatapathError)."""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent itself raises."""


class XdsClientError(AgentError):
    """The xDS client cannot go on (bad target, protocol violation by the server)."""


class UpdateRejectedError(AgentError):
    """An update from the control plane cannot be applied: the xDS client NACKs it with this message."""


class PlanError(UpdateRejectedError):
    """The received plan is invalid: the reason goes back to the control plane in a NACK."""


class SettingsError(AgentError):
    """A command-line flag or setting is invalid."""
