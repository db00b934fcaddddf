"""RBAC, enforced: Roles, ClusterRoles and their bindings decide every request, as kube-apiserver's
RBAC authorizer does (``plugin/pkg/auth/authorizer/rbac``).

A request is described by ``Attributes`` (user, verb, API group, resource, subresource, namespace,
name; or a non-resource path). It is allowed when a rule bound to the user allows it: a
ClusterRoleBinding's rules apply everywhere, a RoleBinding's only in its namespace and never to
non-resource paths. Rules match as ``rbac/v1`` helpers match them: ``*`` for any verb, group or
resource, ``*/sub`` for a subresource of any resource, ``resourceNames`` only when the request
names an object, ``nonResourceURLs`` exactly or by a trailing ``*``. Subjects are Users, Groups
(``system:authenticated``, ``system:serviceaccounts[:NS]``, ``system:masters``...) and
ServiceAccounts (``system:serviceaccount:NS:NAME``; an unqualified one in a RoleBinding is in the
binding's namespace). ClusterRoles with an ``aggregationRule`` take the rules of the ClusterRoles
its selectors match (the aggregation controller's result, computed when read).

Speed: every request is authorized, so the rules bound to a user are compiled once (to sets)
and kept until any RBAC object changes (the store's events clear the cache).

A denial is kube-apiserver's 403 (``responsewriters.Forbidden``): ``<resource>[.<group>] ["name"] is
forbidden: User "U" cannot VERB resource "R[/SUB]" in API group "G" (in the namespace "NS"|at the
cluster scope)``, or ``forbidden: User "U" cannot VERB path "/P"``, followed by ``: RBAC: ...`` when
a binding names a role that does not exist. ``bootstrap_objects`` are the default ClusterRoles
and bindings every cluster starts with (cluster-admin for ``system:masters``, discovery and
self-reviews for every authenticated user).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrator.sim.errors import Forbidden
from migrator.sim.selectors import build_predicate
from migrator.sim.store import Event, Store

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
KEYS = frozenset(f"{RBAC_GROUP}/{r}" for r in ("clusterroles", "clusterrolebindings", "roles", "rolebindings"))
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Identity:
    """An authenticated user: its name and groups (``user.Info``)."""

    name: str
    groups: tuple[str, ...] = (AUTHENTICATED,)

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Identity:
        return cls(f"{SA_PREFIX}{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED))


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (``authorizer.Attributes``)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""            # set for a non-resource request only

    @property
    def resource_request(self) -> bool:
        return not self.path


@dataclass(frozen=True)
class Rule:
    """One PolicyRule, compiled to sets, with where it comes from (for the allow reason)."""

    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str]
    urls: frozenset[str]
    source: str
    raw: Obj = field(compare=False, hash=False)

    @classmethod
    def of(cls, rule: Obj, source: str) -> Rule:
        def s(key: str) -> frozenset[str]:
            return frozenset(rule.get(key) or ())
        return cls(s("verbs"), s("apiGroups"), s("resources"), s("resourceNames"), s("nonResourceURLs"), source, rule)

    def allows(self, a: Attributes) -> bool:
        if a.verb not in self.verbs and "*" not in self.verbs:
            return False
        if not a.resource_request:
            return "*" in self.urls or a.path in self.urls or any(
                u.endswith("*") and a.path.startswith(u[:-1]) for u in self.urls)
        if a.group not in self.groups and "*" not in self.groups:
            return False
        wanted = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        if wanted not in self.resources and "*" not in self.resources \
                and not (a.subresource and f"*/{a.subresource}" in self.resources):
            return False
        return not self.names or a.name in self.names


@dataclass(frozen=True)
class Compiled:
    """Every rule bound to one identity: cluster-wide, and per namespace; errors met on the way."""

    cluster: tuple[Rule, ...]
    namespaced: dict[str, tuple[Rule, ...]]
    errors: tuple[str, ...]


class Authorizer:
    """Decides requests against the RBAC objects of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[Identity, Compiled] = {}
        store.subscribe(self._changed)

    def _changed(self, event: Event) -> None:
        if event.resource in KEYS:
            self._cache = {}

    def compiled(self, who: Identity) -> Compiled:
        found = self._cache.get(who)
        if found is None:
            with self.store.lock:       # no RBAC change lands while the rules are gathered
                found = _compile(self.store, who)
                self._cache[who] = found
        return found

    def authorize(self, who: Identity, a: Attributes) -> tuple[bool, str]:
        """(allowed, reason): the reason is ``RBAC: allowed by ...`` or the errors met, if any."""
        rules = self.compiled(who)
        candidates = rules.cluster if not (a.namespace and a.resource_request) else \
            rules.cluster + rules.namespaced.get(a.namespace, ())
        for rule in candidates:
            if rule.allows(a):
                return True, f"RBAC: allowed by {rule.source}"
        return False, f"RBAC: {', '.join(rules.errors)}" if rules.errors else ""

    def check(self, who: Identity, a: Attributes) -> None:
        """Raise kube-apiserver's 403 unless ``who`` may do ``a``."""
        allowed, reason = self.authorize(who, a)
        if not allowed:
            raise forbidden(who, a, reason)

    def rules_for(self, who: Identity, namespace: str) -> tuple[list[Obj], list[Obj], list[str]]:
        """(resource rules, non-resource rules, errors) that apply to ``who`` in ``namespace``, as a
        SelfSubjectRulesReview lists them."""
        rules = self.compiled(who)
        resource, non_resource = [], []
        for rule in rules.cluster + rules.namespaced.get(namespace, ()):
            raw = rule.raw
            if raw.get("resources"):
                entry = {"verbs": list(raw.get("verbs") or []), "apiGroups": list(raw.get("apiGroups") or []),
                         "resources": list(raw["resources"])}
                if raw.get("resourceNames"):
                    entry["resourceNames"] = list(raw["resourceNames"])
                resource.append(entry)
            if raw.get("nonResourceURLs"):
                non_resource.append({"verbs": list(raw.get("verbs") or []),
                                     "nonResourceURLs": list(raw["nonResourceURLs"])})
        return resource, non_resource, list(rules.errors)


def forbidden(who: Identity, a: Attributes, reason: str = "") -> Forbidden:
    """kube-apiserver's 403 for a denied request (``responsewriters.Forbidden``)."""
    if not a.resource_request:
        msg = f'User "{who.name}" cannot {a.verb} path "{a.path}"'
    else:
        what = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        msg = f'User "{who.name}" cannot {a.verb} resource "{what}" in API group "{a.group}" {scope}'
    if reason:
        msg = f"{msg}: {reason}"
    if not a.resource_request or not a.resource:
        return Forbidden(f"forbidden: {msg}", details={})
    qualified = f"{a.resource}.{a.group}" if a.group else a.resource
    head = f'{qualified} "{a.name}"' if a.name else qualified
    details = {k: v for k, v in (("name", a.name), ("group", a.group), ("kind", a.resource)) if v}
    return Forbidden(f"{head} is forbidden: {msg}", details=details)


# ---------------------------------------------------------------------------------- compiling
def _subject_matches(subject: Obj, who: Identity, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(name == who.name)
    if kind == "Group":
        return name in who.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and who.name == f"{SA_PREFIX}{namespace}:{name}"
    return False


def _describe(subject: Obj, binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or binding_namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def _role_rules(store: Store, ref: Obj, namespace: str) -> list[Obj] | None:
    """The rules of a binding's roleRef; None when the role does not exist."""
    if ref.get("kind") == "Role":
        role = store.try_get(f"{RBAC_GROUP}/roles", namespace, ref.get("name", ""))
        return None if role is None else list(role.get("rules") or [])
    role = store.try_get(f"{RBAC_GROUP}/clusterroles", None, ref.get("name", ""))
    if role is None:
        return None
    rules = list(role.get("rules") or [])
    selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    for selector in selectors:
        labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
        predicate = build_predicate(labels or None, None)
        for other in store.list(f"{RBAC_GROUP}/clusterroles", None, predicate=predicate):
            if other["metadata"]["name"] != role["metadata"]["name"]:
                rules.extend(other.get("rules") or [])
    return rules


def _compile(store: Store, who: Identity) -> Compiled:
    cluster: list[Rule] = []
    namespaced: dict[str, list[Rule]] = {}
    errors: list[str] = []
    for kind, key in (("ClusterRoleBinding", "clusterrolebindings"), ("RoleBinding", "rolebindings")):
        for binding in store.list(f"{RBAC_GROUP}/{key}", None):
            meta = binding["metadata"]
            ns = meta.get("namespace", "") if kind == "RoleBinding" else ""
            subject = next((s for s in binding.get("subjects") or [] if _subject_matches(s, who, ns)), None)
            if subject is None:
                continue
            ref = binding.get("roleRef") or {}
            rules = _role_rules(store, ref, ns)
            if rules is None:
                what = "role" if ref.get("kind") == "Role" else "clusterrole"
                errors.append(f'{what}.{RBAC_GROUP} "{ref.get("name", "")}" not found')
                continue
            name = f"{meta['name']}/{ns}" if ns else meta["name"]
            source = f'{kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" to {_describe(subject, ns)}'
            compiled = [Rule.of(r, source) for r in rules]
            if ns:
                namespaced.setdefault(ns, []).extend(compiled)
            else:
                cluster.extend(compiled)
    return Compiled(tuple(cluster), {k: tuple(v) for k, v in namespaced.items()}, tuple(errors))


# ---------------------------------------------------------------------------------- bootstrap
_DEFAULTS = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
             "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def _role(name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, **_DEFAULTS}, "rules": rules}


def _binding(name: str, *groups: str) -> Obj:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name, **_DEFAULTS},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups]}


def bootstrap_objects() -> list[tuple[str, Obj]]:
    """The default ClusterRoles and ClusterRoleBindings kube-apiserver's RBAC bootstrap creates that
    the simulated cluster needs (``plugin/pkg/auth/authorizer/rbac/bootstrappolicy``)."""
    health = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
    roles = [
        _role("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        _role("system:discovery", [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                                        "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                                    "verbs": ["get"]}]),
        _role("system:public-info-viewer", [{"nonResourceURLs": health, "verbs": ["get"]}]),
        _role("system:basic-user", [
            {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews",
                                                                  "selfsubjectrulesreviews"], "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
    ]
    bindings = [_binding("cluster-admin", MASTERS), _binding("system:discovery", AUTHENTICATED),
                _binding("system:public-info-viewer", AUTHENTICATED, "system:unauthenticated"),
                _binding("system:basic-user", AUTHENTICATED)]
    return [(f"{RBAC_GROUP}/clusterroles", r) for r in roles] + \
        [(f"{RBAC_GROUP}/clusterrolebindings", b) for b in bindings]
