import sys

from imagegen_mcp.cli import main

sys.exit(main())
