"""`python -m paglets`: the same as the `paglets` command."""

from paglets.cli.main import main

if __name__ == "__main__":
    main()
