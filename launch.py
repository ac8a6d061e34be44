"""mnist_ae command line: `python launch.py --task reconstruction|classification|sweep|analyze`.

See `python launch.py --help`, `--list` and `--config.help`.
"""

from mnist_ae.cli import main

if __name__ == "__main__":
    main()
