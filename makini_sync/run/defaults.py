"""The sync run's defaults, in a module that imports nothing: the command line
shows them in its help, and a page worker imports the command's module again
(as every spawned process imports its parent's main module), so a command that
imported the run to read them would load dlt into each worker.
"""

DEFAULT_ROWS_PER_LOAD = 300_000
# rows fetched wait at most about this long for their load, whatever a slow or failing
# connection is doing meanwhile; long enough that a fleet's extra packages cost little
DEFAULT_SECONDS_PER_LOAD = 60.0
