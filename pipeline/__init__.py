"""The single-host stack: config, records, rings, WAL, processes, CLI.

Some modules run compiled when ``var/native`` holds a build of exactly these sources
(``pipeline.native``); otherwise interpreted, with the same behaviour.
"""

from pipeline.native import activate as _activate

_activate(__name__, __path__)
