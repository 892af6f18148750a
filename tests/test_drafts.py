"""The metadata of series not stable yet kept in an API process, within a memory budget."""

from dicomflow.api.drafts import Draft, Drafts


def draft(version: str, count: int) -> Draft:
    parts = {f"1.2.{i} t".encode(): b'{"i":%d}' % i for i in range(count)}
    return Draft(version, b"[" + b",".join(parts.values()) + b"]", parts)


def test_a_series_keeps_its_last_draft_only() -> None:
    drafts = Drafts(max_bytes=1 << 20)
    series = ("t", "1.2", "1.2.3")
    assert drafts.get(series) is None
    drafts.put(series, draft("v1", 2))
    drafts.put(series, draft("v2", 3))
    kept = drafts.get(series)
    assert kept is not None and kept.version == "v2" and len(kept.parts) == 3
    assert drafts.held_size == draft("v2", 3).size


def test_the_least_recently_used_drafts_go_first_and_the_budget_holds() -> None:
    one = draft("v", 10).size
    drafts = Drafts(max_bytes=2 * one + 10)
    a, b, c = (("t", "1.2", f"1.2.{n}") for n in range(3))
    drafts.put(a, draft("v", 10))
    drafts.put(b, draft("v", 10))
    assert drafts.get(a) is not None  # now the most recent
    drafts.put(c, draft("v", 10))
    assert drafts.get(b) is None
    assert drafts.get(a) is not None and drafts.get(c) is not None
    assert drafts.held_size <= drafts.max_size
    drafts.put(("t", "1.2", "big"), draft("v", 100))  # larger than the budget: not kept
    assert drafts.get(("t", "1.2", "big")) is None and drafts.held_size == 2 * one
