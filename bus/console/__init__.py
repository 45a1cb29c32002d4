"""The web console: workflows, live executions, traces and dead letters in a browser.

Server-rendered pages (Starlette, Jinja2) over the same data as the debugging commands
(:mod:`nanoservice.inspect`); see docs/console.md. ``open_console(nc)`` gives a console to
mount (``console.mount()``, at :data:`MOUNT`), ``standalone(console)`` the app of
``nano console``.
"""

from nanoservice.console.app import MOUNT, Console, open_console, standalone

__all__ = ["MOUNT", "Console", "open_console", "standalone"]
