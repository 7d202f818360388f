"""``python -m thinkflow.cli``: the same app as the ``thinkflow`` script (torchrun and the tests start it so)."""

from thinkflow.cli import main

main()
