"""The anomgan command line, runnable as ``python cli.py ...`` (the same typer app as the ``anomgan`` command)."""

from anomgan.cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
