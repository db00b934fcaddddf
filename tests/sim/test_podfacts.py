"""Facts derived per pod are kept per pod version and spec version, and derived again on a change."""

from migrator.sim.controllers.podfacts import PodFacts


def pod(uid, rv, ready):
    return {"metadata": {"uid": uid, "resourceVersion": rv}, "status": {"ready": ready}}


def test_facts_are_derived_again_only_for_changed_pods_or_a_new_spec():
    derived = []

    def derive(p):
        derived.append(p["metadata"]["uid"])
        return p["status"]["ready"]

    facts = PodFacts()
    assert facts.of("rs", 1, [pod("a", "1", True), pod("b", "2", False)], derive) == [True, False]
    assert facts.of("rs", 1, [pod("a", "1", True), pod("b", "3", True)], derive) == [True, True]
    assert derived == ["a", "b", "b"]
    assert facts.of("rs", 2, [pod("a", "1", True)], derive) == [True]        # the spec changed
    assert facts.of("other", 2, [pod("a", "1", True)], derive) == [True]     # owners do not share
    assert derived == ["a", "b", "b", "a", "a"]
    facts.forget("rs")
    assert facts.of("rs", 2, [pod("a", "1", True)], derive) == [True] and derived[-1] == "a"
