"""``python -m benchmark.plot``: the command; its code is ``benchmark.analysis.plots``."""

from benchmark.analysis.plots import main

if __name__ == "__main__":
    main()
