"""``python -m dicomveil``: the command line."""

from dicomveil.cli import main

if __name__ == "__main__":
    main()
