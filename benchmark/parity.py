"""``python -m benchmark.parity``: the command; its code is ``benchmark.analysis.parity``."""

from benchmark.analysis.parity import main

if __name__ == "__main__":
    main()
