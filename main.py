"""functions-framework entry point: `functions-framework --target=jobs`.

Configuration is read and checked here, once, when the module is loaded; a service that
is misconfigured stops with one line instead of starting.

What the imports and the app's assembly create lives as long as the process, so garbage
collection does not go over it (it would, every 700 allocations on the way: about 35 ms,
and again in the worker, copying the pages it touches): collection is paused until the app
is built, and those objects are then frozen out of every later collection, before gunicorn
forks its worker (the `gc.freeze` recipe Python's documentation gives pre-fork servers).
"""

import gc

collecting = gc.isenabled()
gc.disable()
try:
    import functions_framework

    from handlers import ROUTES
    from qjobs.app import build_entry_point

    jobs = functions_framework.http(build_entry_point(ROUTES))
finally:
    if not gc.get_freeze_count():  # once per process: a test builds the app again and again
        gc.freeze()
    if collecting:
        gc.enable()
