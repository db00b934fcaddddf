"""Calico network policy translated to Cilium, and the equivalence check between the two."""
