"""Per-department phonebooks: priority, the handset limit, and files that parse back."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tsunagu import phonebook as pb
from tsunagu.cli import main
from tsunagu.estate import load_estate
from tsunagu.model import Role

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
SMALL = ROOT / "examples" / "small-city.yaml"
LARGE = ROOT / "examples" / "large-city.yaml"


@pytest.fixture(scope="module")
def small():
    return load_estate(SMALL)


@pytest.fixture(scope="module")
def large():
    return load_estate(LARGE)


def _own(estate, dept):
    return {p.extension for p in estate.staff if p.department == dept.id}


def test_a_small_estate_fits_whole(small):
    book = pb.phonebook(small, small.department("shimin"))
    assert len(book.entries) == len(pb.entries(small)) and book.dropped == 0
    assert "nothing dropped" in book.policy()


def test_tiers_come_in_priority_order_and_the_cut_is_counted(small):
    dept = small.department("shimin")
    own = len(_own(small, dept)) + 1  # the department's own hunt group
    groups = sum(1 for g in small.hunt_groups if g.pilot_extension) - 1
    book = pb.phonebook(small, dept, limit=own + groups + 5)
    tiers = [next(name for name, matches in pb.TIERS if matches(e, dept)) for e in book.entries]
    assert tiers == ["own department"] * own + ["published numbers"] * groups + ["managers and operators"] * 5
    assert book.dropped == len(pb.entries(small)) - len(book.entries)
    assert f"dropped {book.dropped:,}" in book.policy()


def test_same_site_comes_before_the_rest(small):
    dept = small.department("shimin")
    book = pb.phonebook(small, dept, limit=None)
    others = [e for e in book.entries if e.department_id not in ("", dept.id)
              and e.kind not in ("hunt_group", "manager", "operator")]
    here = [e.site == dept.site for e in others]
    assert here == sorted(here, reverse=True) and True in here and False in here


def test_large_city_books_stay_within_the_handset_and_keep_their_department(large):
    candidates = pb.entries(large)
    assert len(candidates) > pb.DEFAULT_LIMIT
    leaders = {p.extension for p in large.staff if p.role in (Role.MANAGER, Role.OPERATOR)}
    for dept in large.departments:
        book = pb.phonebook(large, dept, candidates=candidates)
        assert len(book.entries) == pb.DEFAULT_LIMIT, dept.id
        kept = {e.extension for e in book.entries}
        assert _own(large, dept) <= kept and leaders <= kept, dept.id


def test_csv_parses_back(small):
    book = pb.phonebook(small, small.department("zeimu"), limit=100)
    rows = list(csv.DictReader(io.StringIO(pb.to_csv(book))))
    assert tuple(rows[0]) == pb.CSV_COLUMNS and len(rows) == 100
    assert [r["extension"] for r in rows] == [e.extension for e in book.entries]
    assert rows[0]["kind"] == "hunt_group" and rows[0]["published_numbers"]


def _parse_vcards(text: str) -> list[dict[str, str]]:
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    unfolded = text.replace("\r\n ", "").split("\r\n")
    cards, card = [], {}
    for line in filter(None, unfolded):
        key, _, value = line.partition(":")
        if key == "END":
            cards.append(card)
            card = {}
        elif key != "BEGIN":
            card[key] = value
    return cards


def test_vcards_parse_back(small):
    book = pb.phonebook(small, small.department("fukushi"), limit=60)
    cards = _parse_vcards(pb.to_vcard(book, small.municipality.name))
    assert len(cards) == 60 and {c["VERSION"] for c in cards} == {"3.0"}
    assert [c["TEL;TYPE=WORK"] for c in cards] == [e.extension for e in book.entries]
    person = next(c for c, e in zip(cards, book.entries) if e.kind == "staff")
    family, given = person["FN"].split(" ")
    assert person["N"] == f"{family};{given};;;"
    assert person["ORG"] == f"{small.municipality.name};福祉課"


def test_vcard_escapes_and_folds():
    entry = pb.Entry("長い;名前, " + "あ" * 40, "2001", "staff", "x", "課", "hall")
    text = pb._vcard(entry, "市")
    cards = _parse_vcards(text)
    assert cards[0]["FN"] == "長い\\;名前\\, " + "あ" * 40


def test_command_writes_a_book_and_reports_the_policy(tmp_path, capsys):
    out = tmp_path / "shimin.csv"
    assert main(["phonebook", str(SMALL), "--department", "市民課", "--limit", "50", "--output", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 51
    err = capsys.readouterr().err
    assert "exceed the limit of 50" in err and "dropped" in err and "own department" in err


def test_command_writes_one_file_per_department(tmp_path, capsys):
    assert main(["phonebook", str(TINY), "--all-departments", "--format", "vcard",
                 "--output-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shimin.vcf", "soumu.vcf"]
    assert capsys.readouterr().err.count("nothing dropped") == 2


@pytest.mark.parametrize("argv", [["--department", "nosuch"], [], ["--all-departments"]])
def test_command_refuses_unclear_requests(argv, capsys):
    assert main(["phonebook", str(TINY), *argv]) == 2
    assert "tsunagu phonebook:" in capsys.readouterr().err
