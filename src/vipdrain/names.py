"""Name patterns that both the config checks and runtime code rely on (no heavy imports: the
drain's path imports this, and must not load the config's YAML parser or the renderer)."""

import re

INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
