"""`python -m collector`: the feeder; `python -m collector replay FILE`: replay a recording."""

from collector.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
