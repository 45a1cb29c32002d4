"""``python -m nanoservice.cli``: the ``nano`` command (how the supervisor starts hosts)."""

from nanoservice.cli import main

main()
