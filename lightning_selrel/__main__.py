"""Entry point of ``python -m lightning_selrel``."""

from .cli import main

if __name__ == "__main__":
    main()
