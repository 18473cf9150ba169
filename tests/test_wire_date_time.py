"""wire.date_time caches its output; one instant in two zones must still be
written in each zone (aware datetimes of one instant compare equal)."""

from __future__ import annotations

import datetime

from mailhaven.codec import wire


def test_same_instant_in_two_zones_keeps_each_zone():
    utc = datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.UTC)
    paris = utc.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert utc == paris
    assert wire.date_time(utc) == b'"01-Jan-2024 12:00:00 +0000"'
    assert wire.date_time(paris) == b'"01-Jan-2024 13:00:00 +0100"'
    assert wire.date_time(utc) == b'"01-Jan-2024 12:00:00 +0000"'


def test_negative_offset_with_minutes():
    zone = datetime.timezone(-datetime.timedelta(hours=3, minutes=30))
    moment = datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=zone)
    assert wire.date_time(moment) == b'"31-Dec-1999 23:59:59 -0330"'
