"""Phase 6 · Deployment: shipped versions, their aliases and checksums, health, rollback."""

from weightgate.screens.deployment.screen import DeploymentScreen

__all__ = ["DeploymentScreen"]
