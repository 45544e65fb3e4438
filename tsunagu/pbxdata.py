"""The routing data the PBX reads, derived from the estate: one SQL file Ansible loads.

Kamailio's routing logic stays static; everything that differs between cities
(subscribers, hunt groups and their members, DIDs, opening hours, holidays,
caller-ID entitlements) is a row here. The table definitions and the rows come
from the same lists below, so the schema and the data cannot drift apart.
"""

from __future__ import annotations

import hashlib
from datetime import date

from .calendar import closed_dates
from .model import AfterHoursAction, Estate, Schedule, Service
from .numbering import destinations, presentable_numbers

# table -> [(column, SQL type)]; every table is replaced as a whole on each load.
TABLES: dict[str, list[tuple[str, str]]] = {
    "tsunagu_staff": [("extension", "text primary key"), ("staff_id", "text not null"),
                      ("name", "text not null"), ("department", "text not null"),
                      ("site", "text not null"), ("role", "text not null"), ("device", "text not null"),
                      ("takes_phone_home", "boolean not null")],
    "tsunagu_hunt_group": [("id", "text primary key"), ("name", "text not null"),
                           ("strategy", "text not null"), ("pilot_extension", "text"),
                           ("ring_limit_seconds", "integer not null"),
                           ("default_ring_seconds", "integer not null"), ("skip_busy", "boolean not null"),
                           ("schedule", "text not null"), ("after_hours_action", "text not null"),
                           ("after_hours_parameter", "text"), ("recording", "text not null"),
                           ("cdr_retention_years", "integer not null"),
                           ("answer_rate_target", "double precision not null")],
    "tsunagu_hunt_member": [("group_id", "text not null"), ("position", "integer not null"),
                            ("extension", "text not null"), ("tier", "integer not null"),
                            ("ring_seconds", "integer not null")],
    "tsunagu_overflow": [("group_id", "text not null"), ("step", "integer not null"),
                         ("kind", "text not null"), ("target", "text")],
    "tsunagu_did": [("number", "text primary key"), ("e164", "text not null"),
                    ("group_id", "text"), ("published_as", "text"), ("trunks", "text not null"),
                    ("porting", "text not null")],
    # A schedule (Asia/Tokyo): each weekday's hours (0 = Monday; none = closed that weekday),
    # whole closed days (national holidays, municipal closed days, extra closed dates) of
    # this year and the next, and extra open dates. tsunagu_is_open() reads them.
    "tsunagu_hours": [("schedule", "text not null"), ("weekday", "integer not null"),
                      ("opens", "time not null"), ("closes", "time not null")],
    "tsunagu_closed_day": [("schedule", "text not null"), ("day", "date not null"),
                           ("reason", "text not null")],
    "tsunagu_open_day": [("schedule", "text not null"), ("day", "date not null")],
    "tsunagu_caller_id": [("extension", "text not null"), ("number", "text not null"),
                          ("is_default", "boolean not null")],
    "tsunagu_trunk": [("id", "text primary key"), ("carrier", "text not null"), ("site", "text not null"),
                      ("role", "text not null"), ("channels", "integer not null")],
    "tsunagu_pbx_node": [("site", "text primary key"), ("position", "integer not null")],
}

# Tables the PBX itself writes while it runs (call records, hunt state). They are created
# once and never truncated by a data load, so records survive deploys and node restarts.
STATE_TABLES: dict[str, list[tuple[str, str]]] = {
    # one row per call attempt; alerted = members alerted, in order (comma separated)
    "tsunagu_cdr": [("id", "bigserial primary key"), ("call_id", "text not null"),
                    ("node", "text not null"), ("started_at", "timestamptz not null"),
                    ("caller", "text"), ("dialled", "text"), ("hunt_group", "text"),
                    ("overflow", "text"), ("alerted", "text"), ("answered_by", "text"),
                    ("first_alert_ms", "integer"), ("answer_ms", "integer"),
                    ("result", "text not null"), ("status", "integer"),
                    ("recorded_at", "timestamptz not null default now()"),
                    # the PBX's own processing time: the INVITE in to its first branch out (ms, µs resolution)
                    ("first_branch_ms", "double precision"),
                    # groups found closed and the after-hours action each took: "soumu:overflow,..."
                    ("after_hours", "text")],
    # rotation (輪番) pointer: the position of the member who answered last, shared by every node
    "tsunagu_rotation": [("group_id", "text primary key"), ("last_position", "integer not null"),
                         ("updated_at", "timestamptz not null default now()")],
    # calls in progress per extension (busy state, shared by every node)
    "tsunagu_active_call": [("call_id", "text not null"), ("extension", "text not null"),
                            ("node", "text not null"), ("started_at", "timestamptz not null default now()"),
                            ("primary key (call_id, extension)", "")],
    # when each extension's last call ended (longest idle)
    "tsunagu_member_state": [("extension", "text primary key"), ("idle_since", "timestamptz not null")],
}

# key/value facts about the loaded database: data_digest, schema_digest, and `clock`
# (a moment the schedules are evaluated at instead of now(), see tsunagu_now()).
META = [("key", "text primary key"), ("value", "text not null")]
# What schema.sql prints when it changes the database (Ansible's changed_when).
SCHEMA_CHANGED = "tsunagu schema: changed"

# A call on a node that died without its BYE stops counting as busy after this long.
BUSY_GUARD = "12 hours"

# The hunt logic that is data, not code: which members ring in which step, for how long.
# Kamailio (route[HUNT]) asks once per hunt group and gets one text:
#   "<ring limit s>|<step>:<extension>:<ring s>,<step>:<extension>:<ring s>,...|<hours>"
# <hours> is "open", or the group is closed now (its schedule, holidays) and it is the
# group's after-hours action: "overflow" (no step: straight to the overflow chain),
# "ring_home_phones" (the steps hold only members who take their phone home; then the chain),
# "announcement:<name>" or "reject:<status>" (no step; Kamailio ends the call).
# Busy members are left out when the group skips busy members; Kamailio itself leaves out
# members with no registration. `via` is the group whose overflow asked for the operators;
# the operators have no schedule of their own and ring whenever a chain reaches them.
FUNCTIONS_SQL = f"""\
-- The moment schedules are evaluated at: now(), or the deployment's pinned `clock`
-- (tsunagu_meta; Ansible's pbx_data_clock, or a test), so a rehearsal can choose the hour.
CREATE OR REPLACE FUNCTION tsunagu_now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT value::timestamptz FROM tsunagu_meta WHERE key = 'clock'), now())
$$;

-- Is schedule s open at a moment, in Japan's time? As tsunagu/calendar.py is_open(): not a
-- whole closed day, and within the weekday's hours (opens <= t < closes); an extra open
-- date on a weekday without hours keeps the first weekday's hours.
CREATE OR REPLACE FUNCTION tsunagu_is_open(s text, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
  WITH t AS (
    SELECT local::date AS day, local::time AS clock, extract(isodow FROM local)::int - 1 AS weekday
      FROM (SELECT at AT TIME ZONE 'Asia/Tokyo' AS local) l
  ), hours AS (
    SELECT h.opens, h.closes FROM tsunagu_hours h, t
     WHERE h.schedule = s AND h.weekday = coalesce(
             (SELECT w.weekday FROM tsunagu_hours w WHERE w.schedule = s AND w.weekday = t.weekday),
             (SELECT min(w.weekday) FROM tsunagu_hours w WHERE w.schedule = s
                 AND EXISTS (SELECT FROM tsunagu_open_day o WHERE o.schedule = s AND o.day = t.day)))
  )
  SELECT NOT EXISTS (SELECT FROM tsunagu_closed_day c, t WHERE c.schedule = s AND c.day = t.day)
     AND EXISTS (SELECT FROM hours, t WHERE t.clock >= hours.opens AND t.clock < hours.closes)
$$;

CREATE OR REPLACE FUNCTION tsunagu_hunt_plan(g text, via text DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE AS $$
  WITH grp AS (
    SELECT id, strategy, ring_limit_seconds, default_ring_seconds, skip_busy,
           CASE WHEN tsunagu_is_open(schedule, tsunagu_now()) THEN 'open'
                ELSE after_hours_action || coalesce(':' || after_hours_parameter, '') END AS hours
      FROM tsunagu_hunt_group WHERE id = g
    UNION ALL
    SELECT '@operator', 'simultaneous', h.default_ring_seconds, h.default_ring_seconds, h.skip_busy, 'open'
      FROM tsunagu_hunt_group h WHERE g = '@operator' AND h.id = via
  ), members AS (
    SELECT m.position, m.extension, m.tier, m.ring_seconds,
           coalesce((SELECT s.takes_phone_home FROM tsunagu_staff s WHERE s.extension = m.extension), false) AS home
      FROM tsunagu_hunt_member m WHERE m.group_id = g
    UNION ALL
    SELECT row_number() OVER (ORDER BY s.extension)::int, s.extension, 1, 0, s.takes_phone_home
      FROM tsunagu_staff s WHERE g = '@operator' AND s.role = 'operator'
  ), m AS (
    SELECT members.*, grp.*,
           EXISTS (SELECT 1 FROM tsunagu_active_call a WHERE a.extension = members.extension
                     AND a.started_at > now() - interval '{BUSY_GUARD}') AS busy,
           (SELECT idle_since FROM tsunagu_member_state s WHERE s.extension = members.extension) AS idle_since,
           coalesce((SELECT last_position FROM tsunagu_rotation r WHERE r.group_id = g), 0) AS last_position,
           (SELECT max(position) FROM members) AS n
      FROM members, grp
  ), ordered AS (
    SELECT extension, position,
           CASE strategy
             WHEN 'simultaneous' THEN 1
             WHEN 'tiered' THEN dense_rank() OVER (ORDER BY tier)
             WHEN 'rotation' THEN row_number() OVER (ORDER BY (position - last_position - 1 + n) % n)
             WHEN 'longest_idle' THEN row_number() OVER (ORDER BY idle_since NULLS FIRST, position)
             ELSE row_number() OVER (ORDER BY position)
           END AS step,
           CASE strategy
             WHEN 'simultaneous' THEN ring_limit_seconds
             WHEN 'tiered' THEN max(ring_seconds) OVER (PARTITION BY tier)
             ELSE ring_seconds
           END AS seconds
      FROM m WHERE NOT (skip_busy AND busy)
                   AND (hours = 'open' OR (hours = 'ring_home_phones' AND home))
  )
  SELECT (SELECT ring_limit_seconds FROM grp) || '|'
         || coalesce(string_agg(step || ':' || extension || ':' || seconds, ',' ORDER BY step, position), '')
         || '|' || (SELECT hours FROM grp)
    FROM ordered
   WHERE EXISTS (SELECT 1 FROM grp)
$$;

-- The hunt group a dialled number rings: a DID (national or E.164) or a pilot extension.
CREATE OR REPLACE FUNCTION tsunagu_group_for(dialled text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    (SELECT group_id FROM tsunagu_did WHERE number = dialled OR e164 = dialled LIMIT 1),
    (SELECT id FROM tsunagu_hunt_group WHERE pilot_extension = dialled LIMIT 1))
$$;

-- A member answered: both parties are busy, and a rotation group remembers who answered.
CREATE OR REPLACE FUNCTION tsunagu_answered(call text, node text, grp text, callee text, caller text)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO tsunagu_active_call (call_id, extension, node)
    SELECT call, e, node FROM unnest(ARRAY[callee, caller]) AS e
     WHERE e IN (SELECT extension FROM tsunagu_staff)
  ON CONFLICT DO NOTHING;
  INSERT INTO tsunagu_rotation (group_id, last_position)
    SELECT group_id, position FROM tsunagu_hunt_member WHERE group_id = grp AND extension = callee
  ON CONFLICT (group_id) DO UPDATE SET last_position = excluded.last_position, updated_at = now();
$$;

-- A call ended (BYE): its parties are free again and idle from now on.
CREATE OR REPLACE FUNCTION tsunagu_call_ended(call text) RETURNS void LANGUAGE sql AS $$
  WITH ended AS (DELETE FROM tsunagu_active_call WHERE call_id = call RETURNING extension)
  INSERT INTO tsunagu_member_state (extension, idle_since) SELECT DISTINCT extension, now() FROM ended
  ON CONFLICT (extension) DO UPDATE SET idle_since = excluded.idle_since;
$$;
"""

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def rows(estate: Estate, today: date | None = None) -> dict[str, list[tuple]]:
    today = today or date.today()
    out: dict[str, list[tuple]] = {name: [] for name in TABLES}
    for p in estate.staff:
        out["tsunagu_staff"].append((p.extension, p.id, p.name, p.department, estate.site_of(p),
                                     p.role.value, p.device.value, p.takes_phone_home))
        numbers = presentable_numbers(estate, p.id)
        out["tsunagu_caller_id"] += [(p.extension, n, i == 0) for i, n in enumerate(numbers)]
    for g in estate.hunt_groups:
        after = g.after_hours
        parameter = {AfterHoursAction.ANNOUNCEMENT: after.announcement,
                     AfterHoursAction.REJECT: str(after.reject)}.get(after.action)
        out["tsunagu_hunt_group"].append((
            g.id, g.name, g.strategy.value, g.pilot_extension, g.ring_limit_seconds,
            g.default_ring_seconds, g.skip_busy, g.schedule, after.action.value, parameter,
            estate.recording_of(g).value, estate.retention_of(g), g.answer_rate_target))
        members = sorted(enumerate(g.members), key=lambda im: (im[1].order or im[0] + 1, im[0]))
        for position, (_, m) in enumerate(members, start=1):
            out["tsunagu_hunt_member"].append((g.id, position, estate.person(m.staff).extension,
                                               m.tier or 1, m.ring_seconds or g.default_ring_seconds))
        for step, o in enumerate(g.overflow, start=1):
            target = o.group or o.announcement or (str(o.reject) if o.reject else None)
            out["tsunagu_overflow"].append((g.id, step, o.kind, target))
    for d in destinations(estate):
        group = d.destination.removeprefix("group:") if d.destination.startswith("group:") else None
        out["tsunagu_did"].append((d.number, "+81" + d.number[1:], group, d.published_as,
                                   ",".join(d.trunks), d.porting))
    for name, schedule in estate.schedules.items():
        for table, table_rows in schedule_rows(name, schedule, today).items():
            out[table] += table_rows
    for t in estate.trunks:
        out["tsunagu_trunk"].append((t.id, t.carrier, t.site, t.role, t.channels))
    for position, site in enumerate(estate.placement.sites_for(Service.PBX), start=1):
        out["tsunagu_pbx_node"].append((site, position))
    return out


def schedule_rows(name: str, schedule: Schedule, today: date) -> dict[str, list[tuple]]:
    """A schedule's rows: weekday hours, the closed days of this year and the next (holidays
    come from the calendar, so the data is rebuilt, and reloaded, at least once a year), and
    extra open dates. A day past the loaded years still follows the weekday hours."""
    hours = [(name, weekday, h[0].isoformat(), h[1].isoformat())
             for weekday, day in enumerate(_WEEKDAYS) if (h := schedule.hours.get(day))]
    closed = [(name, d.isoformat(), why) for year in (today.year, today.year + 1)
              for d, why in closed_dates(schedule, year)]
    return {"tsunagu_hours": hours, "tsunagu_closed_day": closed,
            "tsunagu_open_day": [(name, d.isoformat()) for d in sorted(set(schedule.extra_open_dates))]}


def subscriber_rows(estate: Estate, handset_passwords: dict[str, str]) -> list[tuple]:
    """Kamailio's own `subscriber` table (auth_db): one row per handset."""
    domain = estate.municipality.sip_domain
    return [(p.extension, domain, handset_passwords[p.extension]) for p in estate.staff]


def schema_sql() -> str:
    """Tables, columns and functions, safe to run on any earlier version of the database.

    A table that exists keeps its rows; a column added since it was created is added
    (ALTER TABLE ... ADD COLUMN IF NOT EXISTS). The first query prints SCHEMA_CHANGED when
    the database lacks a table or column, or last ran a different schema text (the
    functions), which is what Ansible reports as a change."""
    tables = TABLES | STATE_TABLES
    body = [
        f"CREATE TABLE IF NOT EXISTS {table} (\n    "
        + ",\n    ".join(f"{col} {kind}".rstrip() for col, kind in columns) + "\n);"
        for table, columns in tables.items()
    ]
    body += [f"ALTER TABLE {table} " + ", ".join(f"ADD COLUMN IF NOT EXISTS {col} {kind}" for col, kind in addable)
             + ";" for table, columns in tables.items()
             if (addable := [(col, kind) for col, kind in columns if _addable(col, kind)])]
    body.append("CREATE INDEX IF NOT EXISTS tsunagu_cdr_call_id ON tsunagu_cdr (call_id);")
    text = "\n".join(body) + "\n" + FUNCTIONS_SQL
    digest = hashlib.sha256(text.encode()).hexdigest()
    wanted = [f"('{table}', '{col}')" for table, columns in tables.items() for col, _ in columns
              if " " not in col]
    check = (
        f"CREATE TABLE IF NOT EXISTS tsunagu_meta ({', '.join(f'{c} {k}' for c, k in META)});\n"
        f"SELECT '{SCHEMA_CHANGED}' AS schema\n"
        f" WHERE NOT EXISTS (SELECT FROM tsunagu_meta WHERE key = 'schema_digest' AND value = '{digest}')\n"
        f"    OR (SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()\n"
        f"          AND (table_name, column_name) IN ({', '.join(wanted)})) < {len(wanted)};\n"
    )
    record = ("INSERT INTO tsunagu_meta VALUES ('schema_digest', "
              f"'{digest}') ON CONFLICT (key) DO UPDATE SET value = excluded.value;\n")
    return check + text + record


def _addable(column: str, kind: str) -> bool:
    """A column ADD COLUMN IF NOT EXISTS can bring to an older table: not a table constraint,
    a primary key or a serial (those exist since the table's creation)."""
    return " " not in column and not any(word in kind for word in ("primary key", "serial"))


def data_sql(estate: Estate, handset_passwords: dict[str, str], today: date | None = None) -> str:
    """One transaction that replaces every routing table and the subscribers, then records
    the data's digest so a re-run with the same estate can be recognised as no change."""
    body = []
    for table, table_rows in rows(estate, today).items():
        columns = ", ".join(c for c, _ in TABLES[table])
        body.append(f"TRUNCATE {table};")
        body.append(_copy(table, columns, table_rows))
    subscribers = subscriber_rows(estate, handset_passwords)
    body.append(f"DELETE FROM subscriber WHERE domain = {_literal(estate.municipality.sip_domain)};")
    body.append(_copy("subscriber", "username, domain, password", subscribers))
    text = "\n".join(body)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return (
        "BEGIN;\n" + text
        + f"\nINSERT INTO tsunagu_meta VALUES ('data_digest', '{digest}')"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value;\nCOMMIT;\n"
    )


def data_digest(sql: str) -> str:
    """The digest a loaded database records (see data_sql), read back from the SQL text."""
    marker = "VALUES ('data_digest', '"
    start = sql.index(marker) + len(marker)
    return sql[start:start + 64]


def _copy(table: str, columns: str, table_rows: list[tuple]) -> str:
    lines = ["\t".join(_copy_value(v) for v in row) for row in table_rows]
    return f"COPY {table} ({columns}) FROM STDIN;\n" + "".join(line + "\n" for line in lines) + "\\."


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
