import sys

from llava.eval.niavh.cli import main

sys.exit(main())
