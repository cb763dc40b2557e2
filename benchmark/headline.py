"""``python -m benchmark.headline``: the command; its code is ``benchmark.analysis.headline``."""

from benchmark.analysis.headline import main

if __name__ == "__main__":
    main()
