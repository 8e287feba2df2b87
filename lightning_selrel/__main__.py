"""Entry point of ``python -m lightning_selrel``."""

from lightning_selrel.commands.dispatch import console

if __name__ == "__main__":
    console()
