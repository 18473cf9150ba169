"""``mailhaven check``: diagnose why an IMAP client cannot use a server.

The check works against any IMAP server.  It runs its steps in order (DNS, TCP, TLS,
greeting and CAPABILITY, authentication, a few commands after login), stops at the
first that fails and says why in a plain sentence, with the fix.  Each step lives in
its own module; :mod:`mailhaven.diagnose.runner` chains them.
"""

from mailhaven.diagnose.report import Report, Status, StepResult
from mailhaven.diagnose.runner import CheckOptions, Mode, run_check

__all__ = ["CheckOptions", "Mode", "Report", "Status", "StepResult", "run_check"]
