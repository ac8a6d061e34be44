"""mnist_ae command line: `python launch.py --task reconstruction|classification|sweep|analyze`.

See `python launch.py --help`, `--list` and `--config.help`.
"""

import time

STARTED = time.perf_counter()  # before the imports: the run's summary counts them in its wall time

from mnist_ae.cli import main  # noqa: E402

if __name__ == "__main__":
    main(STARTED)
