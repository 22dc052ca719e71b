"""``python -m dicomveil``: the command line (as the ``dicomveil`` program starts it)."""

from dicomveil._command import main

if __name__ == "__main__":
    main()
