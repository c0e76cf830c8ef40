"""``python -m camscope``: the same as the ``camscope`` command."""

from camscope.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
