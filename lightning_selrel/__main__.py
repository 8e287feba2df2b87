"""Entry point of ``python -m lightning_selrel``."""

from .cli import console

if __name__ == "__main__":
    console()
