"""``/api/analytics/cohorts``: the five cohort types' membership, evaluated on the usage data as it is
now, the criteria checked per type, and each user's cohorts their own.

End users are the OpenAI requests' ``user`` field (``end_user`` on a usage row); the subscription tier
is the requests' ``metadata.tier``.
"""

from __future__ import annotations

import time

import pytest

from .usage_rows import row, write

DAY = 86400.0


@pytest.fixture
def people(api):
    """Four end users of alice's deployments, over the last two months:

    * ann: 3 conversations, 4 replies in the last 5 days, model-a, one streamed, one error; tier free, then pro;
    * ben: 1 conversation 2 days ago, model-b, rated 1 (negative); tier pro, then free;
    * cat: only 60 days ago; tier enterprise;
    * dan: 1 completion a day ago, rated 5 (positive).

    Bob has rows for an "ann" too, and alice has rows with no end user: neither is anyone's member.
    """
    now, me = time.time(), api.alice_id
    write([
        row("ann-1", now - 5 * DAY, me, end_user="ann", conversation_id="a1", tier="free"),
        row("ann-2", now - 4 * DAY, me, end_user="ann", conversation_id="a2", stream=True),
        row("ann-3", now - 3 * DAY, me, end_user="ann", conversation_id="a3", success=False, error="timeout"),
        row("ann-4", now - 3 * DAY + 60, me, end_user="ann", conversation_id="a3", tier="pro"),
        row("ben-1", now - 2 * DAY - 60, me, end_user="ben", conversation_id="b1", model="model-b", tier="pro"),
        row("ben-2", now - 2 * DAY, me, end_user="ben", conversation_id="b1", model="model-b", tier="free"),
        row("cat-1", now - 60 * DAY, me, end_user="cat", conversation_id="k1", tier="enterprise"),
        row("dan-1", now - DAY, me, end_user="dan", conversation_id="d1", route="completion"),
        row("anon", now - DAY, me, conversation_id="z1"),
        row("bob-ann", now - DAY, api.bob_id, end_user="ann", model="model-b", tier="enterprise",
            conversation_id="x1", success=False),
    ])
    assert api.rate("ben-2", rating=1).status_code == 200
    assert api.rate("dan-1", rating=5).status_code == 200
    assert api.rate("bob-ann", who=api.bob, rating=1).status_code == 200
    return api


def create(api, cohort_type: str, criteria: dict, who=None, name: str = "c", **extra):
    r = api.client.post("/api/analytics/cohorts", headers=who or api.alice,
                        json={"name": name, "cohort_type": cohort_type, "criteria": criteria, **extra})
    return r


def members(api, cohort_type: str, criteria: dict) -> list[str]:
    r = create(api, cohort_type, criteria)
    assert r.status_code == 201, r.text
    cohort = r.json()["cohort"]
    got = api.client.get("/api/analytics/cohorts", headers=api.alice, params={"cohort_id": cohort["id"]})
    assert got.status_code == 200, got.text
    one = got.json()["cohorts"][0]
    assert cohort["member_count"] == one["member_count"] == len(one["members"])
    return one["members"]


# --- membership per type ---------------------------------------------------------------------------------

def test_a_static_cohort_is_its_list_with_members_added_and_removed(people) -> None:
    api = people
    r = create(api, "static", {"members": ["ann", "zed", "ann"]}, name="Beta testers",
               description="hand-picked")
    assert r.status_code == 201
    c = r.json()["cohort"]
    assert c["member_count"] == 2  # ann once, and zed, who has no usage yet
    assert "owner" not in c and c["name"] == "Beta testers" and c["description"] == "hand-picked"
    assert c["cohort_type"] == "static" and c["is_active"] is True and c["id"].startswith("cohort")
    assert c["created_at"] and c["updated_at"]

    p = api.client.patch("/api/analytics/cohorts", headers=api.alice,
                         json={"cohort_id": c["id"], "add_members": ["ben", "cat"], "remove_members": ["zed"]})
    assert p.status_code == 200, p.text
    assert p.json()["cohort"]["member_count"] == 3 and p.json()["cohort"]["criteria"]["members"] == ["ann", "ben", "cat"]
    got = api.client.get("/api/analytics/cohorts", headers=api.alice, params={"cohort_id": c["id"]}).json()
    assert got["cohorts"][0]["members"] == ["ann", "ben", "cat"]


@pytest.mark.parametrize(("criteria", "expected"), [
    ({"min_conversations": 2, "lookback_days": 30}, ["ann"]),
    ({"min_conversations": 1, "lookback_days": 30}, ["ann", "ben", "dan"]),
    ({"min_conversations": 1, "lookback_days": 2}, ["dan"]),  # ben's replies are just over 2 days old
    ({"min_messages": 2}, ["ann", "ben"]),
    ({"active_status": True, "lookback_days": 7}, ["ann", "ben", "dan"]),
    ({"active_status": True, "lookback_days": 90}, ["ann", "ben", "cat", "dan"]),
    ({"active_status": False, "lookback_days": 30}, ["cat"]),  # seen before the window, not in it
    ({"min_conversations": 50, "lookback_days": 30, "active_status": True}, []),  # the reference's power users
])
def test_a_dynamic_cohort_is_who_was_active_in_the_window(people, criteria, expected) -> None:
    assert members(people, "dynamic", criteria) == expected


@pytest.mark.parametrize(("criteria", "expected"), [
    ({"used_model": "model-b"}, ["ben"]),  # not bob's "ann", who also used model-b
    ({"used_model": "model-a"}, ["ann", "dan"]),
    ({"feedback": "negative"}, ["ben"]),
    ({"feedback": "positive"}, ["dan"]),
    ({"feedback": "any"}, ["ben", "dan"]),
    ({"had_errors": True}, ["ann"]),
    ({"route": "completion"}, ["dan"]),
    ({"streamed": True}, ["ann"]),
    ({"used_model": "model-a", "had_errors": True}, ["ann"]),
    ({"used_model": "model-b", "feedback": "positive"}, []),
    ({"used_model": "model-a", "lookback_days": 90}, ["ann", "cat", "dan"]),
])
def test_a_behavioral_cohort_is_who_did_something(people, criteria, expected) -> None:
    assert members(people, "behavioral", criteria) == expected


@pytest.mark.parametrize(("tiers", "expected"), [
    (["pro"], ["ann"]),  # ann went free -> pro, ben pro -> free: the latest tier wins
    (["free"], ["ben"]),
    (["enterprise"], ["cat"]),  # not bob's "ann"
    (["pro", "enterprise"], ["ann", "cat"]),
    (["platinum"], []),
])
def test_a_subscription_cohort_is_the_latest_tier(people, tiers, expected) -> None:
    assert members(people, "subscription", {"tiers": tiers}) == expected


@pytest.mark.parametrize(("criteria", "expected"), [
    ({"rules": [{"field": "requests", "op": ">=", "value": 3}]}, ["ann"]),
    ({"rules": [{"field": "requests", "op": ">=", "value": 2}, {"field": "error_rate", "op": ">", "value": 0}]},
     ["ann"]),
    ({"rules": [{"field": "requests", "op": ">=", "value": 2}, {"field": "error_rate", "op": ">", "value": 0}],
      "match": "any"}, ["ann", "ben"]),
    ({"rules": [{"field": "tier", "op": "==", "value": "free"}, {"field": "avg_rating", "op": ">=", "value": 5}],
      "match": "any"}, ["ben", "dan"]),
    ({"rules": [{"field": "tier", "op": "in", "value": ["pro", "enterprise"]}]}, ["ann"]),
    ({"rules": [{"field": "tier", "op": "in", "value": ["pro", "enterprise"]}], "lookback_days": 90}, ["ann", "cat"]),
    ({"rules": [{"field": "days_since_seen", "op": "<", "value": 1.5}]}, ["dan"]),
    ({"rules": [{"field": "conversations", "op": "==", "value": 1}, {"field": "avg_rating", "op": "<=", "value": 2}]},
     ["ben"]),
    ({"rules": [{"field": "error_rate", "op": "==", "value": 25.0}]}, ["ann"]),  # 1 of ann's 4
])
def test_a_custom_cohort_matches_rules_all_or_any(people, criteria, expected) -> None:
    assert members(people, "custom", criteria) == expected


# --- counts stay current -------------------------------------------------------------------------------

def test_member_count_follows_new_usage(people) -> None:
    api = people
    c = create(api, "dynamic", {"min_conversations": 2, "lookback_days": 30}, name="regulars").json()["cohort"]
    assert c["member_count"] == 1
    write([row("ben-3", time.time() - 60, api.alice_id, end_user="ben", conversation_id="b2"),
           row("eve-1", time.time() - 60, api.alice_id, end_user="eve", conversation_id="e1"),
           row("eve-2", time.time() - 30, api.alice_id, end_user="eve", conversation_id="e2")])
    listed = api.client.get("/api/analytics/cohorts", headers=api.alice).json()["cohorts"]
    assert [(x["id"], x["member_count"]) for x in listed] == [(c["id"], 3)]
    one = api.client.get("/api/analytics/cohorts", headers=api.alice, params={"cohort_id": c["id"]}).json()
    assert one["cohorts"][0]["members"] == ["ann", "ben", "eve"]


def test_the_data_endpoint_follows_a_dynamic_cohort_as_it_changes(people) -> None:
    api = people
    from datetime import UTC, datetime, timedelta

    c = create(api, "behavioral", {"feedback": "negative"}).json()["cohort"]
    end = datetime.now(UTC) + timedelta(minutes=1)
    q = {"startDate": (end - timedelta(days=10)).isoformat(), "endDate": end.isoformat(), "granularity": "all",
         "cohort_id": c["id"]}
    assert api.data(**q)["aggregations"]["totals"]["messages"] == 2  # ben's two replies
    api.rate("ann-1", rating=1)
    assert api.data(**q)["aggregations"]["totals"]["messages"] == 6  # and now ann's four


# --- validation, listing, PATCH and DELETE ----------------------------------------------------------------

@pytest.mark.parametrize(("cohort_type", "criteria", "field"), [
    ("dynamic", {"min_conversations": -1}, "criteria.min_conversations"),
    ("dynamic", {"lookback_days": 0}, "criteria.lookback_days"),
    ("dynamic", {"min_conversation": 5}, "criteria.min_conversation"),  # a typo is not ignored
    ("behavioral", {"feedback": "lukewarm"}, "criteria.feedback"),
    ("behavioral", {"route": "carrier-pigeon"}, "criteria.route"),
    ("subscription", {"tiers": []}, "criteria.tiers"),
    ("subscription", {}, "criteria.tiers"),
    ("static", {"members": "ann"}, "criteria.members"),
    ("custom", {"rules": []}, "criteria.rules"),
    ("custom", {"rules": [{"field": "shoe_size", "op": ">", "value": 9}]}, "criteria.rules.0.field"),
    ("custom", {"rules": [{"field": "requests", "op": "~", "value": 9}]}, "criteria.rules.0.op"),
    ("custom", {"rules": [{"field": "requests", "op": ">", "value": 1}], "match": "most"}, "criteria.match"),
])
def test_criteria_are_checked_for_the_type_and_the_error_names_the_field(api, cohort_type, criteria, field) -> None:
    r = create(api, cohort_type, criteria)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert api.client.get("/api/analytics/cohorts", headers=api.alice).json()["cohorts"] == []


def test_an_unknown_cohort_type_or_field_is_refused(api) -> None:
    r = create(api, "astrological", {})
    assert r.status_code == 422 and r.json()["error"]["field"] == "cohort_type"
    r = create(api, "static", {"members": []}, colour="blue")
    assert r.status_code == 422 and r.json()["error"]["field"] == "colour"
    r = api.client.post("/api/analytics/cohorts", headers=api.alice, json={"cohort_type": "static"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"


def test_listing_filters_by_type_and_activity_and_limits(api) -> None:
    ids = {}
    for name, kind, crit, active in (("s", "static", {"members": ["a"]}, True),
                                     ("d1", "dynamic", {"lookback_days": 7}, True),
                                     ("d2", "dynamic", {"lookback_days": 30}, False),
                                     ("t", "subscription", {"tiers": ["pro"]}, True)):
        ids[name] = create(api, kind, crit, name=name, is_active=active).json()["cohort"]["id"]

    def names(**params) -> list[str]:
        r = api.client.get("/api/analytics/cohorts", headers=api.alice, params=params)
        assert r.status_code == 200, r.text
        return [c["name"] for c in r.json()["cohorts"]]

    assert names() == ["s", "d1", "d2", "t"]  # oldest first
    assert names(cohort_type="dynamic") == ["d1", "d2"]
    assert names(cohort_type="dynamic", is_active="true", limit="20") == ["d1"]
    assert names(is_active="false") == ["d2"]
    assert names(limit="2") == ["s", "d1"]
    r = api.client.get("/api/analytics/cohorts", headers=api.alice, params={"cohort_type": "imaginary"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "cohort_type"
    r = api.client.get("/api/analytics/cohorts", headers=api.alice, params={"limit": "lots"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"


def test_patch_changes_name_activity_and_criteria(people) -> None:
    api = people
    c = create(api, "dynamic", {"min_conversations": 2, "lookback_days": 30}, name="regulars").json()["cohort"]
    r = api.client.patch("/api/analytics/cohorts", headers=api.alice,
                         json={"cohort_id": c["id"], "is_active": False, "name": "Regulars",
                               "criteria": {"min_conversations": 1, "lookback_days": 30}})
    assert r.status_code == 200, r.text
    p = r.json()["cohort"]
    assert (p["name"], p["is_active"], p["member_count"]) == ("Regulars", False, 3)
    assert p["criteria"] == {"min_conversations": 1, "lookback_days": 30} and p["created_at"] == c["created_at"]
    assert p["updated_at"] >= c["updated_at"]

    bad = api.client.patch("/api/analytics/cohorts", headers=api.alice,
                           json={"cohort_id": c["id"], "criteria": {"min_conversations": "many"}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "criteria.min_conversations"
    bad = api.client.patch("/api/analytics/cohorts", headers=api.alice,
                           json={"cohort_id": c["id"], "add_members": ["ann"]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "add_members"  # not a static cohort
    kept = api.client.get("/api/analytics/cohorts", headers=api.alice, params={"cohort_id": c["id"]}).json()
    assert kept["cohorts"][0]["criteria"] == {"min_conversations": 1, "lookback_days": 30}


def test_delete_removes_the_cohort_and_leaves_the_data(people) -> None:
    api = people
    c = create(api, "static", {"members": ["ann"]}).json()["cohort"]
    r = api.client.delete("/api/analytics/cohorts", headers=api.alice, params={"cohort_id": c["id"]})
    assert r.status_code == 200 and r.json() == {"deleted": c["id"]}
    assert api.client.get("/api/analytics/cohorts", headers=api.alice, params={"cohort_id": c["id"]}).status_code == 404
    assert api.client.delete("/api/analytics/cohorts", headers=api.alice,
                             params={"cohort_id": c["id"]}).status_code == 404
    r = api.client.delete("/api/analytics/cohorts", headers=api.alice)
    assert r.status_code == 422 and r.json()["error"]["field"] == "cohort_id"
    assert members(api, "dynamic", {"active_status": True, "lookback_days": 90}) == ["ann", "ben", "cat", "dan"]


def test_another_users_cohort_is_404_to_read_change_or_delete(people) -> None:
    api = people
    c = create(api, "static", {"members": ["ann"]}).json()["cohort"]
    q = {"cohort_id": c["id"]}
    assert api.client.get("/api/analytics/cohorts", headers=api.bob, params=q).status_code == 404
    assert api.client.patch("/api/analytics/cohorts", headers=api.bob,
                            json={**q, "name": "mine now"}).status_code == 404
    assert api.client.delete("/api/analytics/cohorts", headers=api.bob, params=q).status_code == 404
    assert api.client.get("/api/analytics/cohorts", headers=api.bob).json()["cohorts"] == []
    mine = api.client.get("/api/analytics/cohorts", headers=api.alice, params=q).json()["cohorts"][0]
    assert mine["name"] == "c" and mine["members"] == ["ann"]


def test_bobs_cohorts_count_bobs_end_users(people) -> None:
    api = people
    r = create(api, "subscription", {"tiers": ["enterprise"]}, who=api.bob)
    assert r.status_code == 201 and r.json()["cohort"]["member_count"] == 1  # bob's "ann", not alice's cat
    r = create(api, "behavioral", {"feedback": "negative", "had_errors": True}, who=api.bob)
    assert r.json()["cohort"]["member_count"] == 1
