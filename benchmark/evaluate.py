"""``python -m benchmark.evaluate``: the command; its code is ``benchmark.evaluation.rescore``."""

from benchmark.evaluation.rescore import main

if __name__ == "__main__":
    main()
