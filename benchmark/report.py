"""``python -m benchmark.report``: the command; its code is ``benchmark.analysis.report``."""

from benchmark.analysis.report import main

if __name__ == "__main__":
    main()
