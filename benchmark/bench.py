"""``python -m benchmark.bench``: the command; its code is ``benchmark.devtools.bench``."""

from benchmark.devtools.bench import main

if __name__ == "__main__":
    main()
