"""migrator: live Calico -> Cilium migration."""
__version__ = "0.1.0"
