"""Settings every test shares."""

from hypothesis import settings

# A property test's examples are checked for what they do, not for how fast one of them ran: on a
# loaded machine one example can take longer than hypothesis's default 200 ms deadline, which then
# fails the run (DeadlineExceeded, or "Unreliable test timings" when the replay is quicker). Tests
# that bound their examples on purpose (the fuzz targets, against hangs) still set their own.
settings.register_profile("kurative", deadline=None)
settings.load_profile("kurative")
