"""Schedules written past ``Schedule.save()`` still fire: a trigger clears ``next_fire_at`` when a row's timing,
job or queue changes (or it is switched back on) without a new tick being written, so the schedulers validate
and plan it again at their next pass (``schedule_unplanned_many``). It is the one way to see ``QuerySet.update``
and raw SQL; ``save()``, the admin and the schedulers' own sync write the new tick themselves."""

from __future__ import annotations

from django.db import migrations

CREATE = """
CREATE FUNCTION djtasks_schedule_replan() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The writer changed the definition but not the tick planned for the old one: let a scheduler re-plan it.
    IF NEW.next_fire_at IS NOT DISTINCT FROM OLD.next_fire_at THEN
        NEW.next_fire_at := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER djtasks_schedule_replan
BEFORE UPDATE ON djtasks_schedule
FOR EACH ROW
WHEN (
    (OLD.job_name, OLD.cron, OLD.interval_seconds, OLD.at, OLD.timezone, OLD.queue)
        IS DISTINCT FROM (NEW.job_name, NEW.cron, NEW.interval_seconds, NEW.at, NEW.timezone, NEW.queue)
    OR (NEW.enabled AND NOT OLD.enabled)
)
EXECUTE FUNCTION djtasks_schedule_replan();
"""

DROP = """
DROP TRIGGER IF EXISTS djtasks_schedule_replan ON djtasks_schedule;
DROP FUNCTION IF EXISTS djtasks_schedule_replan();
"""


class Migration(migrations.Migration):
    dependencies = [("djtasks", "0009_queue")]

    operations = [migrations.RunSQL(CREATE, DROP)]
