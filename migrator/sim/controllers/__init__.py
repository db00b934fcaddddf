"""The simulated kube-controller-manager and kube-scheduler.

``install_controllers(world, config)`` wires every controller onto the world's worker:
scheduler, DaemonSet, Deployment, ReplicaSet, Job, garbage collector, disruption (PDB
status), endpoints and LoadBalancer IPs (MetalLB, Cilium LB IPAM). Install them after the API layer registered its resources and
before the world starts dispatching, so no event is missed. They react to store events
only, never sleep, and batch their work (see ``coalesce``).

Pod names come from generators seeded from the world's (one per owner), so a cluster
built from the same seed gets the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrator.sim.config import SimConfig
from migrator.sim.controllers.daemonset import DaemonSetController
from migrator.sim.controllers.deployment import DeploymentController
from migrator.sim.controllers.endpoints import EndpointsController
from migrator.sim.controllers.gc import GarbageCollector
from migrator.sim.controllers.job import JobController
from migrator.sim.controllers.loadbalancer import LoadBalancerController
from migrator.sim.controllers.matching import controller_uid
from migrator.sim.controllers.pdb import DisruptionController
from migrator.sim.controllers.podfactory import PodNames
from migrator.sim.controllers.replicaset import ReplicaSetController
from migrator.sim.controllers.scheduler import Scheduler
from migrator.sim.world import World

__all__ = ["Controllers", "install_controllers"]


@dataclass(frozen=True)
class Controllers:
    """Handles on the installed controllers (tests and benchmarks look inside)."""

    scheduler: Scheduler
    daemonsets: DaemonSetController
    deployments: DeploymentController
    replicasets: ReplicaSetController
    jobs: JobController
    gc: GarbageCollector
    disruption: DisruptionController
    endpoints: EndpointsController
    loadbalancers: LoadBalancerController


def install_controllers(world: World, config: SimConfig) -> Controllers:
    """Register every simulated controller on ``world``; returns them."""
    store = world.store
    store.add_index("pods", "controller-uid", controller_uid)
    store.add_index("apps/controllerrevisions", "controller-uid", controller_uid)
    names = PodNames(world.rng.getrandbits(64))
    return Controllers(
        scheduler=Scheduler(world, config),
        daemonsets=DaemonSetController(world, config, names=names),
        deployments=DeploymentController(world, config),
        replicasets=ReplicaSetController(world, config, names=names),
        jobs=JobController(world, config, names=names),
        gc=GarbageCollector(world, config),
        disruption=DisruptionController(world, config),
        endpoints=EndpointsController(world, config),
        loadbalancers=LoadBalancerController(world, config),
    )
