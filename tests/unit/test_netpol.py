"""The NetworkPolicy evaluator (tests/netpol.py) on the cases the Kubernetes documentation spells out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netpol import Cluster, Pod, selects


def policy(ns: str, spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


DB = Pod("db", "prod", {"role": "db"}, {"pg": (5432, "TCP")})
WEB = Pod("web", "prod", {"role": "web"})
WEB_OTHER_NS = Pod("web2", "dev", {"role": "web"})
OTHER = Pod("other", "dev", {"role": "cache"})


def test_no_policy_means_open_and_any_selecting_policy_isolates() -> None:
    assert Cluster([]).allowed(WEB, DB, 5432)
    deny = policy("prod", {"podSelector": {}, "policyTypes": ["Ingress"]})
    c = Cluster([deny])
    assert c.isolated(DB) and not c.allowed(WEB, DB, 5432)
    assert c.allowed(DB, DB, 5432)  # a pod cannot block access to itself
    assert c.allowed(DB, OTHER, 80)  # OTHER's namespace has no policy


def test_policies_are_additive() -> None:
    deny = policy("prod", {"podSelector": {}, "policyTypes": ["Ingress"]}, "deny")
    allow = policy(
        "prod",
        {
            "podSelector": {"matchLabels": {"role": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "web"}}}]}],
        },
        "allow",
    )
    c = Cluster([deny, allow])
    assert c.allowed(WEB, DB, 5432) and not c.allowed(OTHER, DB, 5432)
    assert not c.allowed(WEB_OTHER_NS, DB, 5432)  # podSelector alone: the policy's namespace only


def test_namespace_and_pod_selector_in_one_peer_vs_two_peers() -> None:
    one_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dev"}},
        "podSelector": {"matchLabels": {"role": "web"}},
    }
    and_ = Cluster([policy("prod", {"podSelector": {}, "ingress": [{"from": [one_peer]}]})])
    assert and_.allowed(WEB_OTHER_NS, DB, 5432) and not and_.allowed(OTHER, DB, 5432)
    two_peers = [{"namespaceSelector": one_peer["namespaceSelector"]}, {"podSelector": one_peer["podSelector"]}]
    or_ = Cluster([policy("prod", {"podSelector": {}, "ingress": [{"from": two_peers}]})])
    assert or_.allowed(OTHER, DB, 5432) and or_.allowed(WEB, DB, 5432)


def test_match_expressions() -> None:
    labels = {"tier": "backend", "env": "prod"}
    assert selects({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["backend", "db"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, labels)
    assert selects({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, labels)
    assert selects({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, labels)
    both = {"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}
    assert not selects(both, labels)
    with pytest.raises(ValueError, match="operator"):
        selects({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, labels)


def test_ports_numbers_names_ranges_protocols() -> None:
    rules = {
        "podSelector": {},
        "ingress": [{"ports": [{"port": "pg"}, {"port": 8000, "endPort": 8010}, {"port": 53, "protocol": "UDP"}]}],
    }
    c = Cluster([policy("prod", rules)])
    assert c.allowed(WEB, DB, "pg") and c.allowed(WEB, DB, 5432)
    assert c.allowed(WEB, DB, 8005) and not c.allowed(WEB, DB, 8011)
    assert not c.allowed(WEB, DB, 53) and c.allowed(WEB, DB, 53, "UDP")
    # a named port resolves on the destination: WEB has no port "pg"
    assert not c.allowed(DB, WEB, 5432)
    with pytest.raises(ValueError, match="no port named"):
        c.allowed(DB, WEB, "pg")


def test_egress_and_ingress_must_both_allow() -> None:
    egress_deny = policy("prod", {"podSelector": {"matchLabels": {"role": "web"}}, "policyTypes": ["Egress"]}, "e")
    c = Cluster([egress_deny])
    assert c.isolated(WEB, "Egress") and not c.isolated(WEB, "Ingress")
    assert not c.allowed(WEB, OTHER, 80) and c.allowed(OTHER, WEB, 80)
    # policyTypes defaults to Ingress (+ Egress when egress rules exist)
    implicit = policy(
        "prod",
        {
            "podSelector": {"matchLabels": {"role": "web"}},
            "egress": [{"to": [{"podSelector": {"matchLabels": {"role": "db"}}}]}],
        },
    )
    c = Cluster([implicit])
    assert Cluster.policy_types(implicit) == ["Ingress", "Egress"]
    assert c.allowed(WEB, DB, 5432) and not c.allowed(WEB, OTHER, 80) and not c.allowed(DB, WEB, 80)


def test_ip_blocks() -> None:
    rule = {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]}
    c = Cluster([policy("prod", rule)])
    assert c.allowed(Pod("a", "x", ip="10.2.3.4"), DB, 5432)
    assert not c.allowed(Pod("b", "x", ip="10.1.3.4"), DB, 5432)
    assert not c.allowed(Pod("c", "x"), DB, 5432)
