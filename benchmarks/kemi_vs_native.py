"""The same hunt-group routing in native kamailio.cfg and in Python KEMI (app_python3), measured.

The PBX's routing language was chosen by this measurement (issue 4). Two small Kamailio
instances, one at a time, run the *same* routing for a hunt-group call, written once in
each language (the templates below):

  sanity, max-forwards, in-dialog requests by Record-Route; for an initial INVITE: the call
  noted in an htable (start time, caller, dialled number), the group's plan -- either from
  PostgreSQL (`SELECT tsunagu_hunt_plan(tsunagu_group_for(<dialled>), '')`, as route[HUNT]
  asks it) or, with `--plan const`, the same text without the database -- parsed into
  its entries, each member looked up in a location htable (only 2001 is "registered", as a
  SIPp UAS), the ring time set (t_set_fr), branch and reply routes armed (the branch route
  notes the time to the first branch, the reply route the first alert), t_relay.

Everything runs in the namespace of one PBX node of a deployed lab (its PostgreSQL, its
address, ports 5070-5093; the lab's own Kamailio is left alone): SIPp UAC (the caller) ->
bench Kamailio -> SIPp UAS (2001: 180, 200; the caller hangs up after 200 ms). dumpcap
on the namespace's loopback gives the processing time (INVITE in -> INVITE branch out,
same Call-ID); CPU is utime+stime of the bench Kamailio's processes (children=4).

    .venv/bin/python benchmarks/kemi_vs_native.py --run-dir /tmp/k4/run \
        --rates 100,200,400,800 --seconds 10 --plan db
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pbx_processing import UAC_XML, UAS_XML, cpu_seconds, pct  # noqa: E402

UAS_PORT, UAC_PORT = 5092, 5093  # the engines: 5070 native, 5071 KEMI
NUMBER = "0736772511"  # tiny.yaml's representative number: group daihyo, members 2000 and 2001
CONST_PLAN = "30|1:2000:30,1:2001:30|open"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"

COMMON = """#!KAMAILIO
@DEFINE@
debug=1
log_stderror=yes
children=4
auto_aliases=no
dns=no
rev_dns=no
listen=udp:@ADDR@:@PORT@
mpath="@MODULES@"

loadmodule "db_postgres.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "sanity.so"
loadmodule "sqlops.so"
loadmodule "htable.so"

modparam("db_postgres", "con_param", "@DBPARAM@")
modparam("sqlops", "sqlcon", "@SQLCON@")
modparam("htable", "htable", "call=>size=12;autoexpire=120;")
modparam("htable", "htable", "loc=>size=4;")
modparam("rr", "enable_full_lr", 0)
modparam("tm", "fr_timer", 5000)
modparam("tm", "restart_fr_on_each_reply", 0)
"""

NATIVE = COMMON + """
request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (!sanity_check("17895", "7")) {
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			t_relay();
		}
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
			exit;
		}
		if (is_method("ACK")) {
			if (t_check_trans()) {
				t_relay();
			}
			exit;
		}
		sl_send_reply("404", "Not Here");
		exit;
	}
	if (!is_method("INVITE")) {
		sl_send_reply("405", "Method Not Allowed");
		exit;
	}
	t_check_trans();
	remove_hf("Route");
	record_route();
	$sht(call=>$ci::s) = $TV(s);
	$sht(call=>$ci::u) = $TV(u);
	$sht(call=>$ci::caller) = $fU;
	$sht(call=>$ci::dialled) = $rU;
#!ifdef WITH_DB
	sql_query("pbx", "SELECT tsunagu_hunt_plan(tsunagu_group_for($(rU{sql.val.str})), '')", "plan");
	$var(plan) = $dbr(plan=>[0,0]);
	sql_result_free("plan");
#!else
	$var(plan) = "@CONST_PLAN@";
#!endif
	if ($sht(loc=>2001) == $null) {
		$sht(loc=>2001) = "sip:2001@@ADDR@:@UAS_PORT@";
	}
	$sht(call=>$ci::limit) = $(var(plan){s.select,0,|}{s.int});
	$var(steps) = $(var(plan){s.select,1,|});
	$var(n) = $(var(steps){s.count,,}) + 1;
	$var(i) = 0;
	$var(found) = 0;
	$var(ms) = 0;
	while ($var(i) < $var(n)) {
		$var(entry) = $(var(steps){s.select,$var(i),,});
		$var(ext) = $(var(entry){s.select,1,:});
		if ($sht(loc=>$var(ext)) != $null) {
			if ($var(found) == 0) {
				$ru = $sht(loc=>$var(ext));
				$var(ms) = $(var(entry){s.select,2,:}{s.int}) * 1000;
			}
			$var(found) = $var(found) + 1;
		}
		$var(i) = $var(i) + 1;
	}
	if ($var(found) == 0) {
		send_reply("480", "Temporarily Unavailable");
		exit;
	}
	t_set_fr($var(ms), $var(ms));
	t_on_branch("BRANCH");
	t_on_reply("REPLY");
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}

branch_route[BRANCH] {
	if ($sht(call=>$ci::fb) == $null) {
		$var(now_s) = $TV(sn);
		$var(now_u) = $TV(un);
		$sht(call=>$ci::fb) = ($var(now_s) - $sht(call=>$ci::s)) * 1000000 + $var(now_u) - $sht(call=>$ci::u);
	}
}

onreply_route[REPLY] {
	if ($rs > 100 && $rs < 200 && $sht(call=>$ci::first) == $null) {
		$sht(call=>$ci::first) = 1;
	}
}
"""

KEMI = COMMON + """
loadmodule "app_python3.so"
modparam("app_python3", "load", "@SCRIPT@")
cfgengine "python"
"""

KEMI_SCRIPT = '''\
import KSR

WITH_DB = @WITH_DB@
CONST_PLAN = "@CONST_PLAN@"
UAS = "sip:2001@@ADDR@:@UAS_PORT@"


def mod_init():
    return Router()


class Router:
    def child_init(self, rank):
        return 0

    # app_python3 calls these for every reply and every message sent (as the native cfg's
    # empty reply_route and onsend_route would be); a missing one leaves an exception behind
    def ksr_reply_route(self, msg):
        return 1

    def ksr_onsend_route(self, msg):
        return 1

    def ksr_request_route(self, msg):
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.send_reply(483, "Too Many Hops")
            return 1
        if KSR.sanity.sanity_check(17895, 7) < 0:
            return 1
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if KSR.siputils.has_totag() > 0:
            if KSR.rr.loose_route() > 0:
                KSR.tm.t_relay()
                return 1
            if KSR.is_ACK():
                if KSR.tm.t_check_trans() > 0:
                    KSR.tm.t_relay()
                return 1
            KSR.sl.send_reply(404, "Not Here")
            return 1
        if not KSR.is_INVITE():
            KSR.sl.send_reply(405, "Method Not Allowed")
            return 1
        KSR.tm.t_check_trans()
        KSR.hdr.remove("Route")
        KSR.rr.record_route()
        ci = KSR.pv.get("$ci")
        KSR.htable.sht_seti("call", ci + "::s", KSR.pv.get("$TV(s)"))
        KSR.htable.sht_seti("call", ci + "::u", KSR.pv.get("$TV(u)"))
        KSR.htable.sht_sets("call", ci + "::caller", KSR.pv.get("$fU") or "")
        dialled = KSR.pv.get("$rU") or ""
        KSR.htable.sht_sets("call", ci + "::dialled", dialled)
        if WITH_DB:
            quoted = "'" + dialled.replace("'", "''") + "'"
            KSR.sqlops.sql_query("pbx", "SELECT tsunagu_hunt_plan(tsunagu_group_for(" + quoted + "), '')", "plan")
            plan = KSR.pv.get("$dbr(plan=>[0,0])") or "0||open"
            KSR.sqlops.sql_result_free("plan")
        else:
            plan = CONST_PLAN
        if KSR.htable.sht_get("loc", "2001") is None:
            KSR.htable.sht_sets("loc", "2001", UAS)
        limit, steps, _hours = plan.split("|")
        KSR.htable.sht_seti("call", ci + "::limit", int(limit))
        found, ms = 0, 0
        for entry in steps.split(",") if steps else []:
            _step, ext, seconds = entry.split(":")
            contact = KSR.htable.sht_get("loc", ext)
            if contact is not None:
                if found == 0:
                    KSR.pv.sets("$ru", contact)
                    ms = int(seconds) * 1000
                found += 1
        if found == 0:
            KSR.sl.send_reply(480, "Temporarily Unavailable")
            return 1
        KSR.tm.t_set_fr(ms, ms)
        KSR.tm.t_on_branch("ksr_branch")
        KSR.tm.t_on_reply("ksr_reply")
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        return 1

    def ksr_branch(self, msg):
        ci = KSR.pv.get("$ci")
        if KSR.htable.sht_get("call", ci + "::fb") is None:
            now_s = KSR.pv.get("$TV(sn)")
            now_u = KSR.pv.get("$TV(un)")
            start_s = KSR.htable.sht_get("call", ci + "::s")
            start_u = KSR.htable.sht_get("call", ci + "::u")
            KSR.htable.sht_seti("call", ci + "::fb", (now_s - start_s) * 1000000 + now_u - start_u)
        return 1

    def ksr_reply(self, msg):
        status = KSR.pv.get("$rs")
        ci = KSR.pv.get("$ci")
        if 100 < status < 200 and KSR.htable.sht_get("call", ci + "::first") is None:
            KSR.htable.sht_seti("call", ci + "::first", 1)
        return 1
'''


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def local_define(local_cfg: str, name: str) -> str:
    m = re.search(rf'^#!define {name} "(.*)"$', local_cfg, re.M)
    if not m:
        raise SystemExit(f"{name} not found in kamailio-local.cfg")
    return m[1]


PORTS = {"native": 5070, "kemi": 5071}


def processing_times(pcap: Path, port: int) -> list[float]:
    """ms from each INVITE arriving at the bench port to its first branch leaving for the UAS."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "sip.Method == \"INVITE\"", "-T", "fields",
                          "-e", "frame.time_epoch", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "sip.Call-ID"],
                         capture_output=True, text=True, check=True).stdout
    arrived, left = {}, {}
    for line in out.splitlines():
        t, src, dst, call_id = line.split("\t")
        if dst == str(port):
            arrived.setdefault(call_id, float(t))
        elif src == str(port) and dst == str(UAS_PORT):
            left.setdefault(call_id, float(t))
    return sorted((left[c] - arrived[c]) * 1000 for c in arrived if c in left)


def kamailio_pids(cfg: Path) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmd.startswith("/usr/sbin/kamailio") and str(cfg) in cmd:
                pids.append(int(p.name))
    return pids


class Engine:
    """One bench Kamailio (native cfg or KEMI) on its own port, in the node's namespace."""

    def __init__(self, name: str, ns: str, work: Path, values: dict[str, str]):
        self.name, self.ns, self.port = name, ns, PORTS[name]
        values = values | {"PORT": str(self.port)}
        self.cfg = work / f"{name}.cfg"
        if name == "kemi":
            script = work / "kemi_router.py"
            script.write_text(fill(KEMI_SCRIPT, values))
            self.cfg.write_text(fill(KEMI, values | {"SCRIPT": str(script)}))
        else:
            self.cfg.write_text(fill(NATIVE, values))
        check = subprocess.run(["/usr/sbin/kamailio", "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        if check.returncode:
            raise SystemExit(f"{name}: kamailio -c failed:\n{check.stderr[-3000:]}")
        self.log = open(work / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/sbin/kamailio", "-DD", "-E", "-f",
                                      str(self.cfg), "-P", str(work / f"{name}.pid"), "-Y", str(work)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids: list[int] = []

    def ready(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.name}: kamailio exited; see {self.log.name}")
        self.pids = kamailio_pids(self.cfg)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def run_rate(engine: Engine, address: str, rate: int, seconds: int, work: Path) -> dict:
    ns, calls = engine.ns, rate * seconds
    pcap, stat = work / f"{engine.name}-{rate}.pcap", work / f"{engine.name}-{rate}.csv"
    stat.unlink(missing_ok=True)
    uas = subprocess.Popen(["ip", "netns", "exec", ns, "sipp", "-sf", str(work / "uas.xml"), "-i", address,
                            "-p", str(UAS_PORT), "-nostdin"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cap = subprocess.Popen(["ip", "netns", "exec", ns, "dumpcap", "-q", "-i", "lo", "-f",
                            f"udp port {engine.port}", "-w", str(pcap)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    cpu0, wall0 = cpu_seconds(engine.pids), time.monotonic()
    subprocess.run(["ip", "netns", "exec", ns, "sipp", "-sf", str(work / "uac.xml"), f"{address}:{engine.port}",
                    "-s", NUMBER, "-i", address, "-p", str(UAC_PORT), "-r", str(rate), "-m", str(calls),
                    "-l", str(max(rate * 4, 10)), "-d", "200", "-recv_timeout", "10000", "-nostdin",
                    "-trace_stat", "-stf", str(stat), "-fd", "1"],
                   capture_output=True, text=True, timeout=seconds * 4 + 60, check=False)
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(engine.pids) - cpu0
    time.sleep(0.5)
    for p in (cap, uas):
        p.terminate()
        p.wait()
    header, *rows = [line.split(";") for line in stat.read_text().splitlines() if line.strip()]
    last = dict(zip(header, rows[-1], strict=False))
    ok = int(last["SuccessfulCall(C)"])
    times = processing_times(pcap, engine.port)
    pcap.unlink(missing_ok=True)
    return {"engine": engine.name, "rate": rate, "calls": calls, "ok": ok, "success": ok / calls,
            "measured": len(times), "p50": pct(times, 50), "p95": pct(times, 95), "p99": pct(times, 99),
            "cpu": 100 * cpu / wall, "cpu_us_per_call": 1e6 * cpu / ok if ok else float("nan"),
            "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="a deployed lab's run dir")
    ap.add_argument("--node", default="dc-east")
    ap.add_argument("--rates", default="100,200,400,800")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--plan", choices=("db", "const"), default="db",
                    help="the plan from PostgreSQL (as the PBX) or a constant (script cost alone)")
    ap.add_argument("--engines", default="native,kemi")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the rates this many times")
    ap.add_argument("--keep", type=Path, help="keep configs, logs and SIPp statistics in this folder")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the bench Kamailios
    host = yaml.safe_load((args.run_dir / "inventory.yml").read_text())["all"]["hosts"][args.node]
    ns, address = host["tsunagu_netns"], host["tsunagu_address"]
    local_cfg = (Path(host["tsunagu_root"]) / "etc/kamailio/kamailio-local.cfg").read_text()
    values = {"ADDR": address, "UAS_PORT": str(UAS_PORT), "MODULES": MODULES,
              "CONST_PLAN": CONST_PLAN, "SQLCON": local_define(local_cfg, "SQLCON"),
              "DBPARAM": local_define(local_cfg, "DB_CON_PARAM"),
              "DEFINE": "#!define WITH_DB" if args.plan == "db" else "",
              "WITH_DB": "True" if args.plan == "db" else "False"}
    rates = [int(r) for r in args.rates.split(",")]
    if args.plan == "db":  # the plan depends on the hour: daihyo rings only 2001 after hours
        # the URL's database part is already libpq key=value pairs (see kamailio-local.cfg)
        user, password, hosts, params = re.fullmatch(r"postgres://([^:]+):(.*)@([^/]+)/(.*)",
                                                     values["SQLCON"].split("=>", 1)[1]).groups()
        conninfo = f"host={hosts} user={user} password={password} {params}"
        plan = subprocess.run(["ip", "netns", "exec", ns, "psql", "-X", "-tA", conninfo, "-c",
                               f"SELECT tsunagu_hunt_plan(tsunagu_group_for('{NUMBER}'), '')"],
                              capture_output=True, text=True, check=True).stdout.strip()
        print(f"plan of {NUMBER} now: {plan}")
    print(f"node {args.node} ({address}); plan from {'PostgreSQL' if args.plan == 'db' else 'a constant'};"
          f" load before: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
    print(f"{'engine':>6} {'cps':>5} {'calls':>6} {'success':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
          f" {'cpu %':>6} {'cpu µs/call':>11}")
    with tempfile.TemporaryDirectory(prefix="kemi-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)
        (work / "uac.xml").write_text(UAC_XML)
        (work / "uas.xml").write_text(UAS_XML)
        engines = []
        try:
            for name in args.engines.split(","):
                engines.append(Engine(name, ns, work, values))
            time.sleep(3)
            for e in engines:
                e.ready()
                run_rate(e, address, 10, 3, work)  # warm-up: each worker's DB connection, imports
            # the engines take turns at each rate, so a change in the shared machine's load
            # hits both alike
            for _ in range(args.rounds):
                for rate in rates:
                    for e in engines:
                        time.sleep(6)  # transactions of a failed run time out (fr_timer 5 s)
                        r = run_rate(e, address, rate, args.seconds, work)
                        print(f"{r['engine']:>6} {r['rate']:>5} {r['calls']:>6} {100 * r['success']:>7.2f}%"
                              f" {r['p50']:>7.2f} {r['p95']:>7.2f} {r['p99']:>7.2f} {r['cpu']:>6.1f}"
                              f" {r['cpu_us_per_call']:>11.0f}   (measured {r['measured']}, load {r['load']:.1f})",
                              flush=True)
        finally:
            for e in engines:
                e.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
