import sys

from dicomflow.cli import main

sys.exit(main())
