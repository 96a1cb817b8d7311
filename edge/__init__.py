"""The edge: REST and WebSocket order entry, auth, limits, read model (see ARCHITECTURE.md).

Its per-order modules run compiled when ``var/native`` holds a build of exactly these sources
(``edge.native``); otherwise interpreted, with the same behaviour.
"""

from edge.native import activate as _activate

_activate(__path__)
