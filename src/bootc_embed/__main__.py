"""``python -m bootc_embed``: the same as the ``bootc-embed`` command."""

from .cli import main

main(prog_name="bootc-embed")
