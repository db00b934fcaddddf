"""The self reviews: what ``kubectl auth can-i`` and ``kubectl auth whoami`` ask the API server.

SelfSubjectAccessReview (``authorization.k8s.io/v1``) answers whether the requesting user may do
one thing (``kubectl auth can-i VERB RESOURCE``); SelfSubjectRulesReview lists the rules that
apply to it in a namespace (``--list``); SelfSubjectReview (``authentication.k8s.io/v1``) says who
it is. Each is created, never stored: the answer is the request with its ``status`` filled in.
"""

from __future__ import annotations

from typing import Any

from migrator.sim.errors import Invalid
from migrator.sim.rbac import Attributes, Authorizer, Identity

Obj = dict[str, Any]


def _answer(body: Obj, kind: str, api_version: str, status: Obj) -> Obj:
    meta = dict((body or {}).get("metadata") or {})
    meta["creationTimestamp"] = None
    return {"kind": kind, "apiVersion": api_version, "metadata": meta,
            "spec": dict((body or {}).get("spec") or {}), "status": status}


def access_review(authorizer: Authorizer, who: Identity, body: Obj) -> Obj:
    """A SelfSubjectAccessReview, answered for ``who``."""
    spec = (body or {}).get("spec") or {}
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if bool(resource) == bool(non_resource):
        raise Invalid.of("SelfSubjectAccessReview", "", [{
            "reason": "FieldValueInvalid", "field": "spec.resourceAttributes",
            "message": "exactly one of nonResourceAttributes or resourceAttributes must be specified"}],
            group="authorization.k8s.io")
    if resource:
        attrs = Attributes(resource.get("verb", ""), resource.get("group", ""), resource.get("resource", ""),
                           resource.get("subresource", ""), resource.get("namespace", ""), resource.get("name", ""))
    else:
        attrs = Attributes((non_resource or {}).get("verb", ""), path=(non_resource or {}).get("path", "") or "/")
    allowed, reason = authorizer.authorize(who, attrs)
    status: Obj = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return _answer(body, "SelfSubjectAccessReview", "authorization.k8s.io/v1", status)


def rules_review(authorizer: Authorizer, who: Identity, body: Obj) -> Obj:
    """A SelfSubjectRulesReview: the rules that apply to ``who`` in ``spec.namespace``."""
    namespace = ((body or {}).get("spec") or {}).get("namespace") or ""
    resource, non_resource, errors = authorizer.rules_for(who, namespace)
    status: Obj = {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": False}
    if errors:
        status["evaluationError"] = ", ".join(errors)
    return _answer(body, "SelfSubjectRulesReview", "authorization.k8s.io/v1", status)


def subject_review(who: Identity, body: Obj) -> Obj:
    """A SelfSubjectReview: the requesting user's name and groups (``kubectl auth whoami``)."""
    answer = _answer(body, "SelfSubjectReview", "authentication.k8s.io/v1",
                     {"userInfo": {"username": who.name, "groups": list(who.groups)}})
    answer.pop("spec")
    return answer
