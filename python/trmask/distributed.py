"""`import trmask.distributed`: trmask across torch.distributed process groups (code in
trmask/integrations/distributed.py; docs/verl.md, docs/sharded-rows.md)."""

from .integrations.distributed import *  # noqa: F401,F403
from .integrations.distributed import __all__, __doc__  # noqa: F401
