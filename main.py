"""functions-framework entry point: `functions-framework --target=jobs`.

Configuration is read and checked here, once, when the module is loaded; a service that
is misconfigured stops with one line instead of starting.
"""

import functions_framework

from handlers import ROUTES
from qjobs.app import build_entry_point

jobs = functions_framework.http(build_entry_point(ROUTES))
