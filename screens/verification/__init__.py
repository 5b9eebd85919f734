"""Phase 2 · Verification: exactly which bytes this workspace runs, and proof they are the"""

from weightgate.screens.verification.screen import VerificationScreen

__all__ = ["VerificationScreen"]
