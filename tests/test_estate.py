"""The estate loader: valid files load; each class of invalid input gives its exact message."""

from __future__ import annotations

import pytest

from tsunagu.estate import load_estate
from tsunagu.model import Strategy
from tsunagu.problems import EstateInvalid


def problems_of(path) -> list[str]:
    with pytest.raises(EstateInvalid) as caught:
        load_estate(path)
    return [str(p) for p in caught.value.problems]


def broken(tiny_text: str, old: str, new: str) -> str:
    assert old in tiny_text, f"fixture no longer contains {old!r}"
    return tiny_text.replace(old, new, 1)


def test_tiny_estate_loads_with_lookups(tiny_text, write_estate):
    estate = load_estate(write_estate(tiny_text))
    assert estate.municipality.representative_numbers == ["0736772511"]
    assert estate.group("soumu").strategy is Strategy.SEQUENTIAL
    assert estate.site_of(estate.person("s4")) == "hall"
    assert [p.id for p in estate.staff_at("hall")] == ["op1", "s1", "s2", "s3", "s4", "s5", "isl1"]
    assert estate.recording_of(estate.group("shimin")).value == "always"
    assert estate.retention_of(estate.group("daihyo")) == 5


# (what is broken, old text, new text, the exact problem lines; {f} is the file)
CASES = [
    ("duplicate extension", 'extension: "2003"', 'extension: "2002"',
     ["{f}:58: staff[3].extension: duplicate extension '2002', already used by staff[2].extension"]),
    ("member not defined", "{staff: s5}", "{staff: s9}",
     ["{f}:86: hunt_groups[2].members[1].staff: member 's9' is not defined in staff"]),
    ("DID outside every trunk range", 'numbers: ["0736-77-2530"]', 'numbers: ["0736-77-3530"]',
     ["{f}:53: departments[1].numbers[0]: DID 0736773530 is outside every trunk range"]),
    ("hunt group without members", "members: [{staff: s4}, {staff: s5}, {staff: isl1}]", "members: []",
     ["{f}:86: hunt_groups[2].members: hunt group has no members"]),
    ("site without WAN data", "    wan: {latency_ms: 4, jitter_ms: 1, loss_pct: 0.1, bandwidth_mbit: 200}\n", "",
     ["{f}:25: sites[2].wan: required field 'wan' is missing"]),
    ("tier in a sequential group", "{staff: s3, order: 2, ring_seconds: 10}",
     "{staff: s3, order: 2, ring_seconds: 10, tier: 2}",
     ["{f}:78: hunt_groups[1].members[1].tier: tier has no meaning in a sequential group"]),
    ("member rings past the group limit", "{staff: s2, order: 1, ring_seconds: 10}",
     "{staff: s2, order: 1, ring_seconds: 45}",
     ["{f}:77: hunt_groups[1].members[0].ring_seconds: member rings 45 s, longer than the group's "
      "ring limit of 30 s"]),
    ("per-member ring time in a simultaneous group", "members: [{staff: op1}, {staff: s1}]",
     "members: [{staff: op1, ring_seconds: 5}, {staff: s1}]",
     ["{f}:67: hunt_groups[0].members[0].ring_seconds: all members of a simultaneous group ring together "
      "for the group's ring limit; a per-member ring time has no meaning"]),
    ("tiered group with one tier", "strategy: rotation\n    members: [{staff: s4}, {staff: s5}, {staff: isl1}]",
     "strategy: tiered\n    members: [{staff: s4, tier: 1}, {staff: s5, tier: 1}, {staff: isl1, tier: 1}]",
     ["{f}:85: hunt_groups[2].strategy: a tiered group needs members in at least two tiers"]),
    ("duplicate order", "{staff: s3, order: 2, ring_seconds: 10}", "{staff: s3, order: 1, ring_seconds: 10}",
     ["{f}:77: hunt_groups[1].members[0].order: order 1 is given to more than one member",
      "{f}:78: hunt_groups[1].members[1].order: order 1 is given to more than one member"]),
    ("special number 119", 'extension: "2010"', 'extension: "1190"',
     ["{f}:61: staff[6].extension: extension '1190' begins with special number 119 (fire and ambulance)",
      "{f}:61: staff[6].extension: extension '1190' is outside every range of the numbering plan"]),
    ("outside-line prefix", 'extension: "2010"', 'extension: "0010"',
     ["{f}:61: staff[6].extension: extension '0010' begins with the outside-line prefix '0'",
      "{f}:61: staff[6].extension: extension '0010' is outside every range of the numbering plan"]),
    ("wrong extension length", 'extension: "2010"', 'extension: "201"',
     ["{f}:61: staff[6].extension: extension '201' has 3 digits, the numbering plan says 4"]),
    ("range over the special numbers", '{first: "2000", last: "2999"}', '{first: "1000", last: "2999"}',
     ["{f}:13: numbering.ranges[0]: range 1000..2999 reaches into the 1XY special numbers (110, 119, ...)"]),
    ("overflow loop", "overflow: [{announcement: closed}]", "overflow: [{group: soumu}]",
     ["{f}:80: hunt_groups[1].overflow: overflow chain loops: soumu -> shimin -> soumu",
      "{f}:87: hunt_groups[2].overflow: overflow chain loops: shimin -> soumu -> shimin"]),
    ("overflow step that does two things", "overflow: [{reject: 480}]", "overflow: [{reject: 480, operator: true}]",
     ["{f}:69: hunt_groups[0].overflow[0]: an overflow step sets exactly one of group, operator, "
      "announcement, reject (this one sets operator, reject)"]),
    ("announcement before the end of the chain", "overflow: [{reject: 480}]",
     "overflow: [{reject: 480}, {operator: true}]",
     ["{f}:69: hunt_groups[0].overflow[0]: reject ends the call, so it must be the last overflow step"]),
    ("unknown member site", "{id: s5, name: 田中 五郎, department: shimin,",
     "{id: s5, name: 田中 五郎, department: shimin, site: moon,",
     ["{f}:60: staff[5].site: site 'moon' is not defined in sites"]),
    ("misspelt field", "  extension_length: 4", "  extention_length: 4",
     ["{f}:9: numbering.extension_length: required field 'extension_length' is missing",
      "{f}:10: numbering.extention_length: unknown field 'extention_length' (did you mean 'extension_length'?)"]),
    ("unquoted telephone number", 'representative_numbers: ["0736-77-2511"]', "representative_numbers: [0736772511]",
     ["{f}:7: municipality.representative_numbers[0]: write telephone numbers in quotes (YAML reads an "
      "unquoted number as an integer and drops the leading 0)"]),
    ("only one PBX site", "pbx: [dc-east, dc-west]", "pbx: [dc-east]",
     ["{f}:30: placement.pbx: list should have at least 2 items after validation, not 1"]),
    ("undefined placement site", "redis: [dc-east, dc-west]", "redis: [dc-east, dc-north]",
     ["{f}:32: placement.redis[1]: site 'dc-north' is not defined in sites"]),
    ("two groups answer one department", "    answers: shimin\n", "    answers: soumu\n",
     ["{f}:53: departments[1].numbers[0]: number 0736772530 rings nothing: no hunt group has answers: shimin",
      "{f}:84: hunt_groups[2].answers: 'soumu' is already answered by hunt_groups[1]"]),
    ("ring home phones without home phones", "takes_phone_home: true", "takes_phone_home: false",
     ["{f}:70: hunt_groups[0].after_hours.action: ring_home_phones, but no member of this group takes "
      "a phone home"]),
    ("undefined schedule", "    recording: always", "    schedule: night\n    recording: always",
     ["{f}:88: hunt_groups[2].schedule: schedule 'night' is not defined in schedules"]),
    ("caller ID outside the trunks", '"0736-77-2599"]', '"0736-77-9999"]',
     ["{f}:115: caller_id.rules[1].may_present[2]: 0736779999 is outside every trunk range, "
      "so it cannot be presented"]),
    ("porting exception outside its range", '{"0736-77-2590": planned}', '{"0736-77-2690": planned}',
     ["{f}:44: trunks[0].did_ranges[0].porting_exceptions.0736772690: 0736772690 is not in this range "
      "(0736772500..0736772599)"]),
    ("bad opening hours", 'mon: "08:30-17:15"', 'mon: "17:15-08:30"',
     ["{f}:110: schedules.default.hours.mon: '17:15-08:30' closes before it opens"]),
    ("duplicate key", "  cdr_retention_years: 5\n", "  cdr_retention_years: 5\n  recording: always\n",
     ["{f}:119: policies.recording: key 'recording' is written twice in the same mapping"]),
]


@pytest.mark.parametrize("what, old, new, expected", CASES, ids=[c[0] for c in CASES])
def test_invalid_estate_message(what, old, new, expected, tiny_text, write_estate):
    path = write_estate(broken(tiny_text, old, new))
    assert problems_of(path) == [line.format(f=path) for line in expected]


def test_every_problem_is_reported_not_just_the_first(tiny_text, write_estate):
    text = broken(tiny_text, 'extension: "2003"', 'extension: "2002"')
    text = broken(text, "{staff: s5}", "{staff: s9}")
    text = broken(text, "kind: city_hall", "kind: town_hall")
    lines = problems_of(write_estate(text))
    assert len(lines) == 3
    assert "sites[2].kind: 'town_hall' is not one of" in lines[0]
    assert "duplicate extension '2002'" in lines[1]
    assert "member 's9' is not defined in staff" in lines[2]


def test_cross_checks_still_run_when_an_entry_is_malformed(tiny_text, write_estate):
    # s1 has an unknown field, so it is dropped; the others are still cross-checked,
    # and references to s1 are not reported a second time.
    text = broken(tiny_text, "takes_phone_home: true}", "takes_phone_home: true, colour: red}")
    text = broken(text, "{staff: s5}", "{staff: s9}")
    lines = problems_of(write_estate(text))
    assert [line.split(": ", 1)[1] for line in lines] == [
        "staff[1].colour: unknown field 'colour' (allowed: department, device, extension, id, name, role, "
        "site, takes_phone_home)",
        "hunt_groups[2].members[1].staff: member 's9' is not defined in staff",
    ]


def test_syntax_error_names_its_line(write_estate):
    path = write_estate("municipality:\n  name: [unclosed\nsites: []\n")
    (line,) = problems_of(path)
    assert line.startswith(f"{path}:3: (syntax): YAML syntax error")


def test_missing_file_is_a_problem_not_a_traceback(tmp_path):
    path = tmp_path / "nowhere.yaml"
    assert problems_of(path) == [f"{path}:1: (file): cannot read: No such file or directory"]


def test_two_sites_cannot_hold_a_quorum(tiny_text, write_estate):
    start = tiny_text.index("  - id: hall")
    end = tiny_text.index("placement:")
    text = tiny_text[:start] + tiny_text[end:]
    text = text.replace("site: hall", "site: dc-east")
    path = write_estate(text)
    assert problems_of(path) == [
        f"{path}:16: sites: HA needs at least three sites: two for the data stores and a witness "
        "that breaks ties for etcd and Redis Sentinel"]
