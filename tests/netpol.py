"""A small evaluator of Kubernetes NetworkPolicy semantics, for reachability tables over rendered charts.

Semantics, as documented by Kubernetes (https://kubernetes.io/docs/concepts/services-networking/network-policies/
and the networking.k8s.io/v1 API reference, NetworkPolicySpec / NetworkPolicyPeer / NetworkPolicyPort):

- "The two sorts of pod isolation": a pod is isolated for ingress (egress) when at least one NetworkPolicy in its
  namespace selects it (``spec.podSelector``; ``{}`` selects every pod of the namespace) and lists ``Ingress``
  (``Egress``) in ``policyTypes``. An isolated pod accepts (sends) only what the union of those policies' rules
  allows (policies are additive, there is no deny rule); a pod no policy selects is not isolated in that direction.
  "For a connection from a source pod to a destination pod to be allowed, both the egress policy on the source pod
  and the ingress policy on the destination pod need to allow the connection."
- ``policyTypes`` defaults (API reference): ``["Ingress"]``, plus ``"Egress"`` when the policy has egress rules.
- A rule matches when one of its peers matches (``from``/``to`` empty or absent: every source/destination) AND one
  of its ports matches (``ports`` empty or absent: every port).
- "Behavior of to and from selectors": a peer with ``podSelector`` only selects pods of the policy's namespace; with
  ``namespaceSelector`` only, every pod of the selected namespaces; with both in ONE peer, the pods matching the
  pod selector in the selected namespaces. ``ipBlock`` peers select by CIDR (pods here carry an optional IP).
- Label selectors: ``matchLabels`` and ``matchExpressions`` ANDed; operators In, NotIn (also true when the key is
  absent), Exists, DoesNotExist. An empty selector matches everything.
- Ports: ``port`` is a number or a named port, resolved against the destination pod's container ports (name and
  protocol); ``protocol`` defaults to TCP; ``endPort`` makes a numeric range.
- Namespaces carry the immutable label ``kubernetes.io/metadata.name`` (set by the API server).
- "a pod cannot block access to itself": a pod reaching itself is always allowed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: namespace, labels, named container ports, optionally an IP."""

    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: dict[str, tuple[int, str]] = field(default_factory=dict, hash=False)  # name -> (containerPort, protocol)
    ip: str | None = None


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector matches ``labels`` (None or {} matches everything)."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"unknown matchExpressions operator {op!r} in {selector}")
        if not ok:
            return False
    return True


class Cluster:
    """NetworkPolicies and namespace labels; answers whether a connection is allowed."""

    def __init__(self, policies: list[dict[str, Any]], namespaces: dict[str, dict[str, str]] | None = None) -> None:
        self.policies = [p for p in policies if p.get("kind") == "NetworkPolicy"]
        self.namespace_labels = dict(namespaces or {})

    def ns_labels(self, namespace: str) -> dict[str, str]:
        return {**self.namespace_labels.get(namespace, {}), "kubernetes.io/metadata.name": namespace}

    @staticmethod
    def policy_types(policy: dict[str, Any]) -> list[str]:
        spec = policy["spec"]
        if spec.get("policyTypes"):
            return list(spec["policyTypes"])
        return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]

    def _selecting(self, pod: Pod, kind: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == pod.namespace
            and kind in self.policy_types(p)
            and selects(p["spec"].get("podSelector"), pod.labels)
        ]

    def isolated(self, pod: Pod, kind: str = "Ingress") -> bool:
        return bool(self._selecting(pod, kind))

    def _peer_matches(self, peer: dict[str, Any], policy_ns: str, other: Pod) -> bool:
        if "ipBlock" in peer:
            if other.ip is None:
                return False
            addr = ipaddress.ip_address(other.ip)
            block = peer["ipBlock"]
            if addr not in ipaddress.ip_network(block["cidr"]):
                return False
            return not any(addr in ipaddress.ip_network(e) for e in block.get("except") or [])
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        if ns_sel is None and pod_sel is None:
            raise ValueError(f"NetworkPolicyPeer with no selector: {peer}")
        ns_ok = other.namespace == policy_ns if ns_sel is None else selects(ns_sel, self.ns_labels(other.namespace))
        return ns_ok and selects(pod_sel, other.labels)

    @staticmethod
    def _port_matches(rule_port: dict[str, Any], dest: Pod, port: int, protocol: str) -> bool:
        if rule_port.get("protocol", "TCP") != protocol:
            return False
        want = rule_port.get("port")
        if want is None:
            return True  # every port of the protocol
        if isinstance(want, str) and not want.isdigit():
            named = dest.ports.get(want)
            return named is not None and named == (port, protocol)
        low = int(want)
        return low <= port <= int(rule_port.get("endPort", low))

    def _rules_allow(
        self, policies: list[dict[str, Any]], kind: str, other: Pod, dest: Pod, port: int, proto: str
    ) -> bool:
        key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key) or []
                if peers and not any(self._peer_matches(p, policy["metadata"]["namespace"], other) for p in peers):
                    continue
                ports = rule.get("ports") or []
                if ports and not any(self._port_matches(rp, dest, port, proto) for rp in ports):
                    continue
                return True
        return False

    def ingress_allowed(self, src: Pod, dest: Pod, port: int, protocol: str = "TCP") -> bool:
        policies = self._selecting(dest, "Ingress")
        return not policies or self._rules_allow(policies, "Ingress", src, dest, port, protocol)

    def egress_allowed(self, src: Pod, dest: Pod, port: int, protocol: str = "TCP") -> bool:
        policies = self._selecting(src, "Egress")
        return not policies or self._rules_allow(policies, "Egress", dest, dest, port, protocol)

    def allowed(self, src: Pod, dest: Pod, port: int | str, protocol: str = "TCP") -> bool:
        """Whether ``src`` may open a connection to ``dest`` on ``port`` (a number, or a name of ``dest``'s ports)."""
        if isinstance(port, str):
            if port not in dest.ports:
                raise ValueError(f"{dest.name} has no port named {port!r} (has {sorted(dest.ports)})")
            port, protocol = dest.ports[port]
        if src == dest:
            return True
        return self.egress_allowed(src, dest, port, protocol) and self.ingress_allowed(src, dest, port, protocol)


def pods_of(objects: list[dict[str, Any]], default_namespace: str) -> dict[str, Pod]:
    """The pods a rendering creates, by workload name (Deployments, StatefulSets, Jobs, Pods, and the pods of a
    ClusterTrainingRuntime's replicated jobs, which land in the TrainJob's namespace: ``default_namespace``)."""
    out: dict[str, Pod] = {}

    def add(name: str, namespace: str, meta: dict[str, Any], spec: dict[str, Any]) -> None:
        ports: dict[str, tuple[int, str]] = {}
        for c in list(spec.get("initContainers", [])) + list(spec.get("containers", [])):
            for p in c.get("ports", []):
                if p.get("name"):
                    ports[p["name"]] = (int(p["containerPort"]), p.get("protocol", "TCP"))
        out[name] = Pod(name, namespace, dict(meta.get("labels") or {}), ports)

    for o in objects:
        kind, meta = o.get("kind"), o.get("metadata", {})
        ns = meta.get("namespace", default_namespace)
        if kind == "Pod":
            add(meta["name"], ns, meta, o["spec"])
        elif kind in {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"}:
            tpl = o["spec"]["template"]
            add(meta["name"], ns, tpl.get("metadata", {}), tpl["spec"])
        elif kind == "ClusterTrainingRuntime":
            for job in o["spec"]["template"]["spec"]["replicatedJobs"]:
                tpl = job["template"]["spec"]["template"]
                add(f"{meta['name']}/{job['name']}", default_namespace, tpl.get("metadata", {}), tpl["spec"])
    return out
