"""`python -m percept` (and `torchrun -m percept`): the `percept` command."""

from percept.cli import main

if __name__ == "__main__":
    main()
