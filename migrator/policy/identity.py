"""Cilium security-identity labels: which pod labels Cilium keeps, and the reserved label keys.

Cilium builds an endpoint's identity from its pod labels minus the identity-irrelevant ones (the
default exclusion list of Cilium's "identity-relevant labels" documentation), plus the namespace
name, the namespace's labels and the service account. A selector on an excluded key silently
matches nothing in Cilium, so the translation refuses it.
"""

from __future__ import annotations

NAMESPACE = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS = "io.cilium.k8s.namespace.labels."
SERVICE_ACCOUNT = "io.cilium.k8s.policy.serviceaccount"

# Cilium's default identity-label exclusions (a key starting with one of these is left out).
EXCLUDED_PREFIXES = (
    "io.kubernetes", "kubernetes.io", "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/job-completion-index", "batch.kubernetes.io/controller-uid", "beta.kubernetes.io",
    "k8s.io", "pod-template-generation", "pod-template-hash", "controller-revision-hash", "annotation.",
    "controller-uid", "etcd_node",
)


def excluded(key: str) -> bool:
    """Whether Cilium leaves a pod label key out of identities by default."""
    return key.startswith(EXCLUDED_PREFIXES)
