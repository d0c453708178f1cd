"""The hub policy file and the one access decision point (``workbench.policy.access``)."""

from workbench.policy.loader import PolicyError, load_policy, parse_policy
from workbench.policy.model import Policy, Study, User

__all__ = ["Policy", "PolicyError", "Study", "User", "load_policy", "parse_policy"]
