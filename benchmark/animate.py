"""``python -m benchmark.animate``: the command; its code is ``benchmark.analysis.animation``."""

from benchmark.analysis.animation import main

if __name__ == "__main__":
    main()
