"""``python -m benchmark.leaderboard``: the command; its code is ``benchmark.analysis.leaderboard``."""

from benchmark.analysis.leaderboard import main

if __name__ == "__main__":
    main()
