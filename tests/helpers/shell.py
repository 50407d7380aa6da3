"""The IPython test shell shared by the magic and panel tests."""

from __future__ import annotations

from typing import Any

from IPython.testing import globalipapp


def ipython_shell() -> Any:
    """The one global test shell with nbdeploy's magics loaded (globalipapp's own
    get_ipython returns None once another module started it)."""
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "nbdeploy")
    return shell
