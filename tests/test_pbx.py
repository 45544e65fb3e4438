"""The PBX core with real handsets: registration, extension calls, hunt groups, overflow, CDRs.

A lab of tests/data/tiny.yaml is deployed once (the session's `deployed_lab`, or an existing
lab named by TSUNAGU_PBX_RUN_DIR, whose secrets are under TSUNAGU_SECRETS_DIR). Every staff
handset is a pjsua2 process of its own in the city hall's namespace (two phones in one
process would see a forked INVITE twice and answer 482): 2000-2003 register with the
PBX node at dc-east, 2004, 2005 and 2010 with dc-west. Citizens call from the carrier's
namespace straight to a node's trunk address, so each test chooses the node a call lands on.

What a test asserts is what the handsets saw: which of them got the INVITE of a call, in
which order and when (wall-clock times from each process), and the tsunagu_cdr row.
The groups (tiny.yaml): daihyo simultaneous 2000+2001; soumu sequential 2002 (10 s), 2003
(10 s) then shimin, then the operators; shimin rotation 2004, 2005, 2010; kikaku (pilot 2901)
tiered 2002+2003 then 2004, 4 s each, then 486; fukushi (pilot 2902) longest idle 2001,
2002, 2003, 3 s each, then the operators. Every group keeps the default schedule (weekdays
08:30-17:15, closed on holidays); the PBX evaluates it at a pinned moment (tsunagu_meta
`clock`): a working day at 10:00 unless a test chooses the night or a holiday.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as daytime
from functools import cached_property
from pathlib import Path

import pytest
import yaml

from tests.pbx_handsets import Account, Handsets
from tsunagu.calendar import JST, closed_reason, is_open
from tsunagu.estate import load_estate

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
CITIZEN = "0312345678"
EAST_PHONES = ("2000", "2001", "2002", "2003")


@dataclass
class Lab:
    run_dir: Path
    inventory: dict
    secrets: dict

    def host(self, name: str) -> dict:
        return self.inventory["all"]["hosts"][name]

    def ns(self, name: str) -> str:
        return self.host(name)["tsunagu_netns"]

    def address(self, name: str) -> str:
        return self.host(name)["tsunagu_address"]

    @property
    def domain(self) -> str:
        return self.inventory["all"]["vars"]["tsunagu_sip_domain"]

    def trunk_address(self, site: str) -> str:
        return next(t["site_address"] for t in self.inventory["all"]["vars"]["tsunagu_trunks"] if t["site"] == site)

    def sql(self, *queries: str) -> list[list[str]]:
        """The rows of each query, run one after the other in one session."""
        hosts = ",".join(self.address(h) for h in self.inventory["all"]["children"]["postgresql"]["hosts"])
        url = f"postgresql://kamailio@{hosts}/kamailio?target_session_attrs=read-write"
        out = subprocess.run(["ip", "netns", "exec", self.ns("dc-east"), "psql", "-X", "-qtA", "-F", "\t",
                              "-v", "ON_ERROR_STOP=1", url, *(a for q in queries for a in ("-c", q))],
                             env=dict(os.environ, PGPASSWORD=self.secrets["services"]["postgres_kamailio"]),
                             capture_output=True, text=True, check=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def cdr(self, call_id: str, timeout: float = 5.0) -> dict:
        columns = ["node", "caller", "dialled", "hunt_group", "overflow", "alerted", "answered_by",
                   "first_alert_ms", "answer_ms", "first_branch_ms", "after_hours", "result", "status"]
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sql(f"SELECT {', '.join(columns)} FROM tsunagu_cdr WHERE call_id = '{call_id}'")
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(rows) == 1, f"expected one CDR row for {call_id}, got {rows}"
        return dict(zip(columns, rows[0], strict=True))

    @cached_property
    def estate(self):
        return load_estate(self.inventory["all"]["vars"]["tsunagu_estate_file"])

    @cached_property
    def moments(self) -> dict[str, datetime]:
        """From tomorrow on: a working day at 10:00 ("open"), that day at 20:00 ("night"), and a
        national holiday on a weekday at 10:00 ("holiday"), by tsunagu.calendar."""
        schedule, day, found = self.estate.schedules["default"], date.today(), {}
        while len(found) < 2:
            day += timedelta(days=1)
            at = datetime.combine(day, daytime(10), JST)
            if "open" not in found and is_open(schedule, at):
                found["open"] = at
            if day.weekday() < 5 and (closed_reason(schedule, day) or "").startswith("national holiday"):
                found.setdefault("holiday", at)
        return found | {"night": found["open"].replace(hour=20)}

    def clock(self) -> str | None:
        rows = self.sql("SELECT value FROM tsunagu_meta WHERE key = 'clock'")
        return rows[0][0] if rows else None

    def set_clock(self, moment: datetime | str | None) -> None:
        """Pin the moment the PBX evaluates schedules at (None: the real time)."""
        if moment is None:
            self.sql("DELETE FROM tsunagu_meta WHERE key = 'clock'")
            return
        value = moment.isoformat() if isinstance(moment, datetime) else moment
        self.sql(f"INSERT INTO tsunagu_meta VALUES ('clock', '{value}') "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value")

    def kamcmd(self, node: str, *args: str) -> str:
        ctl = f"unix:{self.host(node)['tsunagu_root']}/run/kamailio/kamailio_ctl"
        return subprocess.run(["kamcmd", "-s", ctl, *args], capture_output=True, text=True, check=False).stdout

    def supervisorctl(self, *args: str) -> str:
        conf = self.run_dir / "supervisor" / "supervisord.conf"
        return subprocess.run(["supervisorctl", "-c", str(conf), *args], capture_output=True, text=True,
                              check=False).stdout


@pytest.fixture(scope="module")
def lab(request):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if run_dir := os.environ.get("TSUNAGU_PBX_RUN_DIR"):
        run_dir = Path(run_dir)
        inventory = yaml.safe_load((run_dir / "inventory.yml").read_text())
        secrets_dir = Path(os.environ["TSUNAGU_SECRETS_DIR"])
        domain = inventory["all"]["vars"]["tsunagu_sip_domain"]
        secrets = yaml.safe_load((secrets_dir / f"{domain}.yaml").read_text())
    else:
        deployed = request.getfixturevalue("deployed_lab")
        run_dir = deployed.run_dir
        inventory = yaml.safe_load(deployed.inventory.read_text())
        secrets = yaml.safe_load(deployed.secrets.read_text())
    lab = Lab(run_dir, inventory, secrets)
    before = lab.clock()
    lab.set_clock(lab.moments["open"])  # office hours, whatever the time of the run
    yield lab
    lab.set_clock(before)


@pytest.fixture
def clock(lab):
    """Set the moment the PBX's schedules are evaluated at, for one test."""
    yield lab.set_clock
    lab.set_clock(lab.moments["open"])


@pytest.fixture(scope="module")
def phones(lab):
    started: dict[str, Handsets] = {}
    try:
        for ext, password in lab.secrets["handsets"].items():
            node = "dc-east" if ext in EAST_PHONES else "dc-west"
            started[ext] = Handsets(lab.ns("hall"), [Account(ext, password, lab.domain, lab.address(node))],
                                    python=sys.executable)
        for handset in started.values():
            handset.registered(timeout=20)
        yield started
    finally:
        for handset in started.values():
            handset.close()


@pytest.fixture(scope="module")
def citizen(lab):
    handset = Handsets(lab.ns("carrier"), [Account(CITIZEN, "", "carrier.test")], python=sys.executable)
    yield handset
    handset.close()


@pytest.fixture(autouse=True)
def fresh(request, lab):
    """Every test starts with phones that only ring, no calls up, and no hunt history."""
    if "phones" not in request.fixturenames:
        yield
        return
    phones = request.getfixturevalue("phones")
    citizen = request.getfixturevalue("citizen")
    everyone = [*phones.values(), citizen]
    for h in everyone:
        h.send(cmd="hangup")
        for a in h.accounts:
            h.mode(a.user, "ring")
    time.sleep(0.5)
    lab.sql("DELETE FROM tsunagu_active_call; DELETE FROM tsunagu_rotation; DELETE FROM tsunagu_member_state")
    for h in everyone:
        h.pump()
        h.events.clear()
    yield
    for h in everyone:
        h.send(cmd="hangup")
    time.sleep(0.5)


# ---------------------------------------------------------------- helpers

def call(handset: Handsets, uri: str) -> tuple[str, float]:
    """Place a call; its Call-ID and the wall-clock time it started."""
    started = time.time()
    handset.send(cmd="call", acc=handset.accounts[0].user, uri=uri)
    ev = handset.wait_for(lambda e: e["ev"] == "calling")
    handset.events.remove(ev)
    return ev["call_id"], started


def citizen_calls(lab: Lab, citizen: Handsets, number: str, node: str) -> tuple[str, float]:
    return call(citizen, f"sip:{number}@{lab.trunk_address(node)}")


def rang(phones: dict[str, Handsets], call_id: str, settle: float = 0.0) -> list[tuple[str, float]]:
    """(extension, time) of every INVITE of this call the handsets received, in order."""
    if settle:
        time.sleep(settle)
    seen = []
    for ext, h in phones.items():
        h.pump()
        seen += [(ext, e["t"]) for e in h.events if e["ev"] == "incoming" and e["call_id"] == call_id]
    return sorted(seen, key=lambda s: s[1])


def state(handset: Handsets, call_id: str, wanted: str, timeout: float = 20.0) -> dict:
    return handset.wait_for(lambda e: e["ev"] == "state" and e["call_id"] == call_id and e["state"] == wanted,
                            timeout)


def answer(phones, *extensions, delay: float = 0.3):
    for ext in extensions:
        phones[ext].mode(ext, "answer", delay)


def probe(lab: Lab, node: str, code: str) -> dict:
    """Run sipprobe code inside a namespace (its last expression printed as JSON)."""
    script = ("import json\nfrom tsunagu import sipprobe\n" + code)
    out = subprocess.run(["ip", "netns", "exec", lab.ns(node), sys.executable, "-c", script], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


# ---------------------------------------------------------------- registration

def test_registration_refuses_wrong_password_unknown_user_and_someone_elses_extension(lab):
    node, domain = lab.address("dc-east"), lab.domain
    pw = lab.secrets["handsets"]
    got = probe(lab, "dc-east", f"""
def reg(user, password, to=None):
    with sipprobe.Endpoint("{node}", user=user, domain="{domain}", password=password) as ep:
        reply, _ = ep.request("REGISTER", "{node}", uri="sip:{domain}", to=to or f"sip:{{user}}@{domain}",
                              extra="Expires: 0\\r\\n")
        return reply.status
print(json.dumps({{"own": reg("2002", "{pw['2002']}"), "wrong": reg("2002", "not-the-password"),
                  "unknown": reg("2999", "x"), "other": reg("2002", "{pw['2002']}", "sip:2003@{domain}")}}))
""")
    lab.kamcmd("dc-east", "htable.flush", "authfail")
    assert got == {"own": 200, "wrong": 401, "unknown": 401, "other": 403}


def test_repeated_failures_block_the_source_for_a_while_and_are_logged(lab):
    node, domain = lab.address("dc-west"), lab.domain
    try:
        got = probe(lab, "dc-east", f"""
codes = []
for _ in range(7):
    with sipprobe.Endpoint("{node}", user="2002", domain="{domain}", password="guess") as ep:
        reply, _ = ep.request("REGISTER", "{node}", uri="sip:{domain}", to="sip:2002@{domain}")
        codes.append(reply.status)
print(json.dumps(codes))
""")
        assert got[:4] == [401] * 4 and got[4:] == [403] * 3
        assert lab.address("dc-east") in lab.kamcmd("dc-west", "htable.dump", "ipban")
        log = (Path(lab.host("dc-west")["tsunagu_root"]) / "var/log/kamailio.log").read_text()
        assert f"blocked {lab.address('dc-east')} for" in log
    finally:
        lab.kamcmd("dc-west", "htable.flush", "ipban")
        lab.kamcmd("dc-west", "htable.flush", "authfail")


def test_the_trunk_refuses_anyone_but_the_carrier(lab):
    trunk = lab.trunk_address("dc-east")
    got = probe(lab, "dc-east", f"""
with sipprobe.Endpoint("{trunk}", user="{CITIZEN}") as ep:
    reply, _ = ep.request("INVITE", "{trunk}", uri="sip:0736772511@{trunk}")
print(json.dumps(reply.status))
""")
    assert got == 403


# ---------------------------------------------------------------- extension calls

@pytest.mark.parametrize("caller, callee", [("2002", "2003"), ("2002", "2004"), ("2005", "2001")],
                         ids=["same-node", "east-to-west", "west-to-east"])
def test_extension_calls_reach_handsets_registered_on_either_node(lab, phones, caller, callee):
    answer(phones, callee)
    call_id, _ = call(phones[caller], f"sip:{callee}@{lab.domain}")
    state(phones[caller], call_id, "CONFIRMED", timeout=10)
    assert [ext for ext, _ in rang(phones, call_id)] == [callee]
    row = lab.cdr(call_id)
    node = "dc-east" if caller in EAST_PHONES else "dc-west"
    assert (row["node"], row["caller"], row["dialled"], row["answered_by"], row["result"]) == \
        (node, caller, callee, callee, "answered")


# ---------------------------------------------------------------- hunt strategies

def test_simultaneous_rings_every_member_at_once_and_the_first_answer_wins(lab, phones, citizen):
    answer(phones, "2001", delay=1.0)
    call_id, started = citizen_calls(lab, citizen, "0736772511", "dc-east")
    state(citizen, call_id, "CONFIRMED", timeout=10)
    seen = rang(phones, call_id)
    assert sorted(ext for ext, _ in seen) == ["2000", "2001"]
    assert seen[1][1] - seen[0][1] < 0.2
    state(phones["2000"], call_id, "DISCONNECTED", timeout=5)  # the other one stops ringing
    row = lab.cdr(call_id)
    assert sorted(row["alerted"].split(",")) == ["2000", "2001"]
    assert (row["hunt_group"], row["answered_by"], row["result"], row["caller"], row["dialled"]) == \
        ("daihyo", "2001", "answered", CITIZEN, "0736772511")
    assert 0 < int(row["first_alert_ms"]) < 500 and 1000 <= int(row["answer_ms"]) < 1600


def test_cdr_records_the_pbx_processing_time_to_the_first_branch(lab, phones, citizen):
    answer(phones, "2000")
    call_id, _ = citizen_calls(lab, citizen, "0736772511", "dc-east")
    state(citizen, call_id, "CONFIRMED", timeout=10)
    row = lab.cdr(call_id)
    assert row["hunt_group"] == "daihyo"
    first_branch, first_alert = float(row["first_branch_ms"]), float(row["first_alert_ms"])
    # first_alert_ms is whole ms; the 180 crosses the WAN twice after the branch leaves
    assert 0 < first_branch <= first_alert and first_branch < 1000


def test_sequential_rings_each_member_for_its_ring_time_in_priority_order(lab, phones, citizen):
    answer(phones, "2003", delay=0.5)
    call_id, started = citizen_calls(lab, citizen, "0736772520", "dc-east")
    state(citizen, call_id, "CONFIRMED", timeout=15)
    seen = rang(phones, call_id)
    assert [ext for ext, _ in seen] == ["2002", "2003"]
    assert 9.7 < seen[1][1] - seen[0][1] < 10.6  # 2002's ring time, from PostgreSQL
    row = lab.cdr(call_id)
    assert (row["alerted"], row["answered_by"], row["result"]) == ("2002,2003", "2003", "answered")


def test_tiered_rings_a_tier_together_then_the_next_then_rejects(lab, phones):
    call_id, started = call(phones["2010"], f"sip:2901@{lab.domain}")
    end = state(phones["2010"], call_id, "DISCONNECTED", timeout=15)
    seen = rang(phones, call_id)
    assert [ext for ext, _ in seen][2:] == ["2004"] and sorted(ext for ext, _ in seen[:2]) == ["2002", "2003"]
    assert seen[1][1] - seen[0][1] < 0.2  # tier 1 together
    assert 3.7 < seen[2][1] - seen[0][1] < 4.6  # tier 2 after tier 1's 4 s
    assert end["code"] == 486  # the group's last overflow step
    assert 7.5 < end["t"] - started < 9.5  # and nobody is left ringing
    row = lab.cdr(call_id)
    assert (row["hunt_group"], row["result"], row["status"], row["overflow"]) == \
        ("kikaku", "overflowed", "486", "reject:486")
    assert row["alerted"].split(",")[2] == "2004"


def test_rotation_starts_after_the_last_answerer_on_either_node(lab, phones, citizen):
    answer(phones, "2004", "2005", "2010")
    first_rung = []
    for node in ("dc-east", "dc-west", "dc-east", "dc-west"):
        call_id, _ = citizen_calls(lab, citizen, "0736772530", node)
        state(citizen, call_id, "CONFIRMED", timeout=10)
        first_rung.append(rang(phones, call_id)[0][0])
        assert lab.cdr(call_id)["node"] == node
        citizen.send(cmd="hangup")
        state(citizen, call_id, "DISCONNECTED", timeout=5)
        time.sleep(0.3)
    assert first_rung == ["2004", "2005", "2010", "2004"]


def test_longest_idle_rings_the_member_idle_longest_first(lab, phones):
    # history: 2002's last call ends before 2001's; 2003 has had no call at all
    answer(phones, "2002", "2001")
    for ext in ("2002", "2001"):
        call_id, _ = call(phones["2010"], f"sip:{ext}@{lab.domain}")
        state(phones["2010"], call_id, "CONFIRMED", timeout=10)
        phones["2010"].send(cmd="hangup")
        state(phones["2010"], call_id, "DISCONNECTED", timeout=5)
        time.sleep(0.5)
    phones["2002"].mode("2002", "ring")
    call_id, _ = call(phones["2005"], f"sip:2902@{lab.domain}")
    state(phones["2005"], call_id, "CONFIRMED", timeout=15)
    seen = rang(phones, call_id)
    assert [ext for ext, _ in seen] == ["2003", "2002", "2001"]
    assert all(2.7 < b[1] - a[1] < 3.6 for a, b in zip(seen, seen[1:]))
    assert lab.cdr(call_id)["answered_by"] == "2001"


def test_a_member_calling_their_own_group_is_not_rung(lab, phones):
    answer(phones, "2003")
    call_id, started = call(phones["2002"], f"sip:2900@{lab.domain}")  # soumu: 2002 first, then 2003
    state(phones["2002"], call_id, "CONFIRMED", timeout=10)
    seen = rang(phones, call_id)
    assert [ext for ext, _ in seen] == ["2003"]
    assert seen[0][1] - started < 2.0  # at once, not after 2002's 10 s
    assert lab.cdr(call_id)["alerted"] == "2003"


def test_busy_and_unregistered_members_are_skipped_at_once(lab, phones, citizen):
    # 2002 is on a call with the operator; 2003 has no registration
    answer(phones, "2002")
    busy_call, _ = call(phones["2000"], f"sip:2002@{lab.domain}")
    state(phones["2000"], busy_call, "CONFIRMED", timeout=10)
    phones["2003"].send(cmd="register", acc="2003", on=False)
    phones["2003"].wait_for(lambda e: e["ev"] == "reg" and e["acc"] == "2003" and e["expiration"] == 0)
    try:
        answer(phones, "2004")
        call_id, started = citizen_calls(lab, citizen, "0736772520", "dc-east")
        state(citizen, call_id, "CONFIRMED", timeout=10)
        seen = rang(phones, call_id)
        assert [ext for ext, _ in seen] == ["2004"]  # soumu had nobody to ring: straight to shimin
        assert seen[0][1] - started < 1.0
        row = lab.cdr(call_id)
        assert (row["hunt_group"], row["overflow"], row["answered_by"]) == ("soumu", "group:shimin", "2004")
    finally:
        phones["2003"].send(cmd="register", acc="2003", on=True)
        phones["2003"].wait_for(lambda e: e["ev"] == "reg" and e["acc"] == "2003" and e["expiration"] > 0)


def test_abandoned_calls_are_recorded(lab, phones, citizen):
    call_id, _ = citizen_calls(lab, citizen, "0736772511", "dc-west")
    for ext in ("2000", "2001"):
        state(phones[ext], call_id, "EARLY", timeout=5)  # its 180 is on the way
    state(citizen, call_id, "EARLY", timeout=5)  # a 180 came through the PBX
    citizen.send(cmd="hangup")
    for ext in ("2000", "2001"):
        state(phones[ext], call_id, "DISCONNECTED", timeout=5)
    row = lab.cdr(call_id)
    assert (row["node"], row["result"], row["answered_by"]) == ("dc-west", "abandoned", "")
    # "alerted" lists the members whose 180 reached the PBX before the CANCEL; the second
    # one's may still cross the WAN when the caller gives up
    alerted = row["alerted"].split(",")
    assert alerted and set(alerted) <= {"2000", "2001"} and len(set(alerted)) == len(alerted)


# ---------------------------------------------------------------- opening hours and holidays

def _literal(value) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def test_schedules_in_postgresql_follow_the_calendar(lab):
    """tsunagu_is_open() against tsunagu.calendar.is_open, at the edges of the opening hours
    on every day of the years whose holidays are loaded: the estate's schedule, and a copy
    with an extra open Saturday and an extra closed working day (loaded in a transaction
    that is rolled back)."""
    from tsunagu.pbxdata import schedule_rows

    today = date.today()
    default = lab.estate.schedules["default"]
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    probe = default.model_copy(update={"extra_open_dates": [saturday],
                                       "extra_closed_dates": [lab.moments["open"].date()]})
    inserts = [f"INSERT INTO {table} VALUES " + ", ".join("(" + ", ".join(map(_literal, r)) + ")" for r in rows)
               for table, rows in schedule_rows("probe", probe, today).items() if rows]
    days = [today + timedelta(days=i) for i in range((date(today.year + 1, 12, 31) - today).days + 1)]
    times = [daytime(0), daytime(8, 29, 59, 999999), daytime(8, 30), daytime(17, 14, 59, 999999),
             daytime(17, 15)]
    query = (
        "SELECT s, d, tm, tsunagu_is_open(s, (d + tm) AT TIME ZONE 'Asia/Tokyo')"
        f" FROM unnest(ARRAY[{', '.join(repr(d.isoformat()) for d in days)}]::date[]) d,"
        f" unnest(ARRAY[{', '.join(repr(t.isoformat()) for t in times)}]::time[]) tm,"
        " (VALUES ('default'), ('probe')) v(s)")
    got = {(r[0], r[1], r[2]): r[3] == "t" for r in lab.sql("BEGIN", *inserts, query, "ROLLBACK")}
    want = {(name, d.isoformat(), t.strftime("%H:%M:%S.%f").removesuffix(".000000")):
            is_open(schedule, datetime.combine(d, t, JST))
            for name, schedule in (("default", default), ("probe", probe)) for d in days for t in times}
    assert len(got) == len(want) and sum(want.values()) > 0
    assert {k: v for k, v in got.items() if want[k] != v} == {}
    assert got[("probe", saturday.isoformat(), "08:30:00")]
    assert not got[("probe", lab.moments["open"].date().isoformat(), "08:30:00")]


def test_on_a_holiday_closed_groups_follow_their_overflow_chain(lab, phones, citizen, clock):
    clock(lab.moments["holiday"])
    answer(phones, "2000")
    call_id, started = citizen_calls(lab, citizen, "0736772520", "dc-east")
    state(citizen, call_id, "CONFIRMED", timeout=10)
    seen = rang(phones, call_id)
    # soumu and then shimin are closed (after hours: overflow), the operators ring at once
    assert [ext for ext, _ in seen] == ["2000"] and seen[0][1] - started < 1.0
    row = lab.cdr(call_id)
    assert (row["hunt_group"], row["after_hours"], row["overflow"], row["answered_by"]) == \
        ("soumu", "soumu:overflow,shimin:overflow", "group:shimin,operator:", "2000")


def test_at_night_only_the_phones_taken_home_ring(lab, phones, citizen, clock):
    clock(lab.moments["night"])
    answer(phones, "2001")
    call_id, _ = citizen_calls(lab, citizen, "0736772511", "dc-west")
    state(citizen, call_id, "CONFIRMED", timeout=10)
    # daihyo after hours: ring_home_phones; 2001 (a manager) takes the phone home, the operator does not
    assert [ext for ext, _ in rang(phones, call_id, settle=0.3)] == ["2001"]
    row = lab.cdr(call_id)
    assert (row["after_hours"], row["alerted"], row["answered_by"], row["result"]) == \
        ("daihyo:ring_home_phones", "2001", "2001", "answered")


def test_a_closed_group_that_rejects_ends_the_call_at_once(lab, phones, clock):
    before = lab.sql("SELECT after_hours_action, coalesce(after_hours_parameter, '') FROM tsunagu_hunt_group"
                     " WHERE id = 'kikaku'")[0]
    lab.sql("UPDATE tsunagu_hunt_group SET after_hours_action = 'reject', after_hours_parameter = '603'"
            " WHERE id = 'kikaku'")
    try:
        clock(lab.moments["night"])
        call_id, started = call(phones["2010"], f"sip:2901@{lab.domain}")
        end = state(phones["2010"], call_id, "DISCONNECTED", timeout=5)
        assert end["code"] == 603 and end["t"] - started < 1.0
        assert rang(phones, call_id, settle=0.3) == []
        row = lab.cdr(call_id)
        assert (row["hunt_group"], row["after_hours"], row["status"], row["result"]) == \
            ("kikaku", "kikaku:reject:603", "603", "overflowed")
    finally:
        lab.sql(f"UPDATE tsunagu_hunt_group SET after_hours_action = '{before[0]}',"
                f" after_hours_parameter = nullif('{before[1]}', '') WHERE id = 'kikaku'")


# ---------------------------------------------------------------- operator and island phones

def test_the_operator_transfers_a_caller_to_an_island_group_phone(lab, phones):
    answer(phones, "2000", "2010")
    call_id, _ = call(phones["2005"], f"sip:2000@{lab.domain}")
    state(phones["2005"], call_id, "CONFIRMED", timeout=10)
    operator_leg = phones["2000"].wait_for(lambda e: e["ev"] == "incoming" and e["call_id"] == call_id)
    phones["2000"].send(cmd="xfer", acc="2000", call=operator_leg["call"], uri=f"sip:2010@{lab.domain}")
    island = phones["2010"].wait_for(lambda e: e["ev"] == "incoming", timeout=10)
    assert island["referred"] and "2005@" in island["remote"]
    state(phones["2010"], island["call_id"], "CONFIRMED", timeout=10)
    row = lab.cdr(island["call_id"])
    assert (row["caller"], row["dialled"], row["answered_by"], row["result"]) == ("2005", "2010", "2010", "answered")


# ---------------------------------------------------------------- records

def test_cdr_rows_survive_a_pbx_node_restart(lab, phones, citizen):
    answer(phones, "2001")
    call_id, _ = citizen_calls(lab, citizen, "0736772511", "dc-west")
    state(citizen, call_id, "CONFIRMED", timeout=10)
    before = lab.cdr(call_id)
    assert "RUNNING" in lab.supervisorctl("restart", "dc-west-kamailio") + lab.supervisorctl("status",
                                                                                             "dc-west-kamailio")
    time.sleep(3)
    assert lab.cdr(call_id) == before


@pytest.mark.slow
def test_a_group_that_rings_out_ends_with_its_final_status(lab, phones, citizen):
    call_id, started = citizen_calls(lab, citizen, "0736772511", "dc-east")
    end = state(citizen, call_id, "DISCONNECTED", timeout=40)
    assert end["code"] == 480 and 29.5 < end["t"] - started < 31.5  # daihyo: 30 s, then 480
    row = lab.cdr(call_id)
    assert (row["result"], row["status"], row["overflow"]) == ("overflowed", "480", "reject:480")
