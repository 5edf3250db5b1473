import sys

from rmood.rm.methods import MethodError, methods

try:  # the plugin methods are loaded before the steps they add to the command line: a broken one is one line
    methods()
except MethodError as error:
    sys.exit(f"rmood: {error}")

from rmood.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
