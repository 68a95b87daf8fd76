"""``python -m app.cli``: the ``ftgw`` command."""

from app.cli import main

main()
