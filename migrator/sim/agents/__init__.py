"""Simulated CNI agents: calico-node and the cilium agent."""
