"""nnspec's package logger, ``nnspec.logging.logger`` (``logging.getLogger("nnspec")``).

The library adds no handler of its own: configure logging in the application to see its messages.
"""

import logging as _logging

logger: _logging.Logger = _logging.getLogger("nnspec")

__all__ = ["logger"]
