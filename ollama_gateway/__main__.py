"""`python -m ollama_gateway` runs the command line."""

import sys

from ollama_gateway.cli import main

sys.exit(main())
