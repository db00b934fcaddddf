"""Preflight checks, one module per concern (Calico, Cilium, workloads and policies)."""
