"""``python -m wdfusb``: the same command line as ``wdfusb`` (see :mod:`wdfusb.cli`)."""

from .cli import main

if __name__ == "__main__":
    main()
