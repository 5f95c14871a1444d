"""`make demo`'s command line (the platform itself is local_platform.demo):

python -m scripts.local_platform up | down | status | backup | restore KEY
"""

import sys

from local_platform.demo import main

if __name__ == "__main__":
    sys.exit(main())
