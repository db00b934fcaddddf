"""Who a request is: bearer tokens, ServiceAccount tokens (TokenRequest) and impersonation.

Tokens: the admin token of the served kubeconfig authenticates as ``sim-admin`` in
``system:masters`` (everything allowed, as kubeadm's admin.conf); ``add_user`` issues a token for
a plain user, who may do nothing beyond what every authenticated user may until bound to a role.
A ServiceAccount token (``POST .../serviceaccounts/NAME/token``, ``kubectl create token``) is
``system:serviceaccount:NS:NAME`` in ``system:serviceaccounts``, ``system:serviceaccounts:NS`` and
``system:authenticated``; it stops working when its ServiceAccount is deleted (or replaced).

Impersonation (``Impersonate-User``, repeated ``Impersonate-Group``) follows kube-apiserver's
filter: the requester needs ``impersonate`` on ``users`` (or ``serviceaccounts`` in the account's
namespace) named after the user and on ``groups`` named after each group; the impersonated user
gets the ServiceAccount groups when it is one and none were given, and ``system:authenticated``.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from migrator.sim.errors import BadRequest, Invalid, NotFound
from migrator.sim.httpparse import Headers
from migrator.sim.rbac import AUTHENTICATED, MASTERS, SA_PREFIX, Attributes, Authorizer, Identity, forbidden
from migrator.sim.store import Store

Obj = dict[str, Any]
ADMIN = Identity("sim-admin", (MASTERS, AUTHENTICATED))
#: kube-apiserver's --api-audiences default to its --service-account-issuer (kubeadm's)
AUDIENCE = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600


class Authenticator:
    """Bearer tokens of one API server and the identities they stand for."""

    def __init__(self, store: Store, admin_token: str) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._users: dict[str, Identity] = {admin_token: ADMIN}
        self._accounts: dict[str, tuple[str, str, str | None]] = {}   # token -> namespace, name, uid

    def add_user(self, name: str, groups: tuple[str, ...] = ()) -> str:
        """Issue a bearer token for user ``name`` (in ``groups`` and ``system:authenticated``)."""
        token = secrets.token_hex(16)
        with self._lock:
            self._users[token] = Identity(name, (*groups, AUTHENTICATED))
        return token

    def service_account_token(self, namespace: str, name: str, uid: str | None = None) -> str:
        """A token for ServiceAccount ``namespace/name`` (bound to its ``uid`` when given); valid
        while that account exists."""
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._accounts[token] = (namespace, name, uid)
        return token

    def authenticate(self, authorization: str) -> Identity | None:
        """The identity of an ``Authorization: Bearer ...`` header (the scheme in any case, as
        kube-apiserver reads it: the in-cluster Python client sends ``bearer``); None when unknown."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        found = self._users.get(token)
        if found is not None:
            return found
        account = self._accounts.get(token)
        if account is None:
            return None
        namespace, name, uid = account
        sa = self.store.try_get("serviceaccounts", namespace, name)
        if sa is None or (uid is not None and sa["metadata"].get("uid") != uid):
            return None
        return Identity.service_account(namespace, name)

    def token_request(self, namespace: str, name: str, body: Obj) -> Obj:
        """Answer a TokenRequest for ServiceAccount ``namespace/name``."""
        sa = self.store.try_get("serviceaccounts", namespace, name)
        if sa is None:
            raise NotFound.of("serviceaccounts", name)
        spec = dict((body or {}).get("spec") or {})
        seconds = spec.get("expirationSeconds") or DEFAULT_EXPIRATION
        if not isinstance(seconds, int) or seconds < MIN_EXPIRATION:
            raise Invalid.of("TokenRequest", "", [{
                "reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                "message": f"Invalid value: {seconds}: may not specify a duration less than 10 minutes"}],
                group="authentication.k8s.io")
        token = self.service_account_token(namespace, name, sa["metadata"].get("uid"))
        expires = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
                "spec": {"audiences": spec.get("audiences") or [AUDIENCE], "expirationSeconds": seconds,
                         "boundObjectRef": spec.get("boundObjectRef")},
                "status": {"token": token, "expirationTimestamp": expires}}


def impersonate(authorizer: Authorizer, requester: Identity, headers: Headers) -> Identity:
    """The identity a request acts as: ``requester``, or whom its Impersonate-* headers name
    (kube-apiserver's 403 when the requester may not impersonate them)."""
    user = headers.get("Impersonate-User")
    groups = headers.get_all("Impersonate-Group")
    if user is None:
        if groups:
            raise BadRequest(f"requested [groups {groups}] without impersonating a user")
        return requester
    checks: list[Attributes] = []
    if user.startswith(SA_PREFIX) and user.count(":") == 3:
        namespace, name = user[len(SA_PREFIX):].split(":")
        checks.append(Attributes("impersonate", "", "serviceaccounts", namespace=namespace, name=name))
        if not groups:
            groups = list(Identity.service_account(namespace, name).groups[:2])
    else:
        checks.append(Attributes("impersonate", "", "users", name=user))
    checks += [Attributes("impersonate", "", "groups", name=g) for g in groups]
    for attrs in checks:
        allowed, reason = authorizer.authorize(requester, attrs)
        if not allowed:
            raise forbidden(requester, attrs, reason)
    if user != "system:anonymous" and AUTHENTICATED not in groups and "system:unauthenticated" not in groups:
        groups = [*groups, AUTHENTICATED]
    return Identity(user, tuple(groups))
