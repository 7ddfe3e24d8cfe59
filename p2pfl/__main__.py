import sys

from p2pfl.cli.main import main

sys.exit(main())
