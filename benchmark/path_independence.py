"""``python -m benchmark.path_independence``: the command; its code is ``benchmark.evaluation.path_independence``."""

from benchmark.evaluation.path_independence import main

if __name__ == "__main__":
    main()
