"""`import trmask.verl`: verl's rollout correction on trmask's kernels (code in
trmask/integrations/verl; docs/verl.md)."""

from .integrations.verl import *  # noqa: F401,F403
from .integrations.verl import __all__, __doc__  # noqa: F401
