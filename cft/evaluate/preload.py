"""Imported by the grading forkserver (see `pool.py`), never by hand.

Importing it imports math-verify and builds its LaTeX parser once, so every
worker forked from the server, including replacements for killed ones, starts
ready in milliseconds instead of paying that cost itself.
"""

from cft.evaluate.grade import warm_up

warm_up()
