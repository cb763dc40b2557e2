"""``python -m benchmark.study``: the command; its code is ``benchmark.analysis.study``."""

from benchmark.analysis.study import main

if __name__ == "__main__":
    main()
