"""One run at a time: a coordination.k8s.io/v1 Lease held and renewed by the running process.

The holder identity is ``<hostname>/<pid>/<run_id>`` so that a refusal can name who holds the
lock, from where. Every write is a compare-and-swap on the Lease's resourceVersion, so of two
processes racing for it exactly one wins; the other gets ``LockHeld``. A lease not renewed for
its duration is stale and may be taken over; so may a lease whose holder is a process on this
very host that no longer exists (a crashed run being resumed). ``force_takeover`` takes a live
lease and is audited: logged, and reported through ``taken_over_from`` so the caller can
record it in the checkpoint and an Event.

Fencing: the lock keeps a ``Fence`` that the guarded port (``cluster/guard.py``) consults
before every mutating call, so no call site can forget. After each successful acquire or
renewal the fence is good until that renewal's ``renewTime + leaseDuration`` measured on this
process's monotonic clock (from the moment the renewTime was taken, so never later than what
other processes see). Past it, writes are refused with ``LeaseExpired`` until a renewal
succeeds; once a renewal finds another holder (a ``--force-takeover``, or a takeover of the
expired lease) they are refused with ``LockLost`` naming that holder, for good. Reads and the
lease's own requests are never fenced.

Following the Lease: between renewals the keep-alive thread does not sleep, it waits on one
WATCH of the Lease (``ClusterPort.watch_lease``, as client-go's informers follow one object) up
to the next renewal. An event naming another holder loses the fence at once, so after a
``--force-takeover`` the old holder learns it within milliseconds instead of at its next
renewal, and sends no further write. A DELETED event, or a watch that breaks, renews at once
(at most every ``RENEW_GAP`` seconds; a deleted lease is then found lost as on any renewal); a
watch that cannot be opened (the server down, or no such grant) leaves the keep-alive renewing
every period as without it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from migrator.clock import Clock, SystemClock
from migrator.cluster.errors import AlreadyExists, ClusterError, Conflict, LeaseExpired, NotFound
from migrator.cluster.port import ClusterPort, LeaseRecord, LeaseWatch

log = structlog.get_logger(__name__)

DEFAULT_NAMESPACE = "kube-system"
DEFAULT_NAME = "cni-migration-lock"
RENEW_GAP = 1.0  # seconds: a watch that keeps breaking renews the lease at most this often
TAKEOVER_ATTEMPTS = 5  # a forced takeover racing the renewals of the holder it takes over from


def holder_identity(run_id: str, *, hostname: str | None = None, pid: int | None = None) -> str:
    """``<hostname>/<pid>/<run_id>``."""
    return f"{hostname or socket.gethostname()}/{pid if pid is not None else os.getpid()}/{run_id}"


def _dead_local_holder(holder: str | None) -> bool:
    """True if ``holder`` names a process on this host that no longer runs."""
    parts = (holder or "").split("/")
    if len(parts) < 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LockHeld(Exception):
    """Another live run holds the lease."""

    def __init__(self, holder: str, renewed_at: datetime | None, *, where: str = "") -> None:
        self.holder = holder
        self.renewed_at = renewed_at
        when = renewed_at.isoformat(timespec="seconds") if renewed_at else "never"
        super().__init__(f"another migrator run holds the lock {where}: {holder} "
                         f"(last renewed {when}); wait for it to finish, or stop it first")


class LockLost(Exception):
    """Our lease was taken by someone else (or deleted) while we ran; stop acting."""


class Fence:
    """Whether this process may still write: armed by ``RunLock``, checked by the guarded port.

    Unarmed (no lease taken, as for ``status``, ``pause`` or ``abort``) it allows everything."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._mutex = threading.Lock()
        self.valid_until: float | None = None   # monotonic seconds; None = not armed
        self.lost: str | None = None
        self.where = "the run lease"

    def arm(self, taken_at: float, duration_seconds: float, *, where: str = "") -> None:
        """A renewal stamped at monotonic ``taken_at`` succeeded: writes allowed for its duration."""
        with self._mutex:
            if self.lost is None:
                self.valid_until = taken_at + duration_seconds
                self.where = where or self.where

    def lose(self, message: str) -> None:
        """Someone else holds the lease: no write from this process, ever again."""
        with self._mutex:
            self.lost = message

    def disarm(self) -> None:
        """The lease was released: the fence no longer judges this process's writes."""
        with self._mutex:
            if self.lost is None:
                self.valid_until = None

    def check_write(self, what: str) -> None:
        """Raise ``LockLost`` or ``LeaseExpired`` if a write (``what``) must not be sent now."""
        with self._mutex:
            lost, until = self.lost, self.valid_until
        if lost is not None:
            raise LockLost(f"{lost}; refused to {what}")
        if until is not None and self.clock.monotonic() > until:
            late = self.clock.monotonic() - until
            raise LeaseExpired(f"{self.where} expired {late:.1f}s ago and could not be renewed; "
                               f"refused to {what} until it is renewed")


class RunLock:
    """Acquire, renew and release the run lease."""

    def __init__(self, port: ClusterPort, *, identity: str, namespace: str = DEFAULT_NAMESPACE,
                 name: str = DEFAULT_NAME, ttl_seconds: int = 30, clock: Clock | None = None) -> None:
        self.port = port
        self.identity = identity
        self.namespace = namespace
        self.name = name
        self.ttl_seconds = ttl_seconds
        self.clock = clock or SystemClock()
        self.record: LeaseRecord | None = None
        self.taken_over_from: str | None = None
        self.lost: str | None = None
        self._keepalive: threading.Thread | None = None
        self._watch: LeaseWatch | None = None   # the keep-alive's watch in flight, stopped by release
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        shared = getattr(port, "fence", None)  # the guarded port's, so its writes are fenced
        self.fence: Fence = shared if isinstance(shared, Fence) else Fence(self.clock)

    @property
    def where(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    def _is_stale(self, record: LeaseRecord, now: datetime) -> bool:
        last = record.renew_time or record.acquire_time
        duration = record.duration_seconds or self.ttl_seconds
        return last is None or now > last + timedelta(seconds=duration)

    def acquire(self, *, force_takeover: bool = False) -> LeaseRecord:
        """Take the lease, or raise ``LockHeld`` naming the live holder.

        A forced takeover that loses the compare-and-swap to the very holder it is taking over
        from (a renewal landed in between) reads the lease again and takes it, a few times at
        most; losing to anyone else is ``LockHeld``."""
        for _ in range(TAKEOVER_ATTEMPTS - 1):
            try:
                return self._acquire(force_takeover=force_takeover)
            except LockHeld as exc:
                if not (force_takeover and self.taken_over_from and exc.holder == self.taken_over_from):
                    raise
        return self._acquire(force_takeover=force_takeover)

    def _acquire(self, *, force_takeover: bool) -> LeaseRecord:
        now, taken_at = self.clock.now(), self.fence.clock.monotonic()  # the fence judges on its own clock
        current = self.port.read_lease(self.namespace, self.name)
        mine = LeaseRecord(namespace=self.namespace, name=self.name, holder=self.identity,
                           duration_seconds=self.ttl_seconds, acquire_time=now, renew_time=now)
        try:
            if current is None:
                self.record = self.port.create_lease(mine)
                self.fence.arm(taken_at, self.ttl_seconds, where=self.where)
                log.info("lease.acquired", where=self.where, holder=self.identity)
                return self.record
            if current.holder and current.holder != self.identity:
                stale = self._is_stale(current, now)
                dead = _dead_local_holder(current.holder)
                if not (stale or dead or force_takeover):
                    raise LockHeld(current.holder, current.renew_time, where=self.where)
                self.taken_over_from = current.holder
                event = "lease.force_takeover" if not (stale or dead) else "lease.takeover"
                log.warning(event, where=self.where, previous=current.holder,
                            stale=stale, holder_dead=dead, holder=self.identity)
            self.record = self.port.replace_lease(replace(
                mine, transitions=current.transitions + (current.holder != self.identity),
                resource_version=current.resource_version))
        except (AlreadyExists, Conflict) as exc:
            winner = self.port.read_lease(self.namespace, self.name)
            if winner is not None and winner.holder == self.identity:
                # our own request, retried after an unknown outcome, found itself applied
                self.record = winner
            else:
                raise LockHeld(winner.holder if winner and winner.holder else "unknown",
                               winner.renew_time if winner else None, where=self.where) from exc
        self.fence.arm(taken_at, self.ttl_seconds, where=self.where)
        log.info("lease.acquired", where=self.where, holder=self.identity)
        return self.record

    def renew(self) -> LeaseRecord:
        """Extend our lease; ``LockLost`` if it is no longer ours."""
        with self._mutex:
            if self.record is None:
                raise LockLost(f"{self.where} was never acquired")
            if self.lost:
                raise LockLost(self.lost)
            taken_at = self.fence.clock.monotonic()
            try:
                self.record = self.port.replace_lease(replace(self.record, renew_time=self.clock.now()))
            except (Conflict, NotFound) as exc:
                current = self.port.read_lease(self.namespace, self.name)
                holder = current.holder if current else None
                if current is None or holder != self.identity:
                    raise LockLost(self._lose(holder)) from exc
                taken_at = self.fence.clock.monotonic()
                self.record = self.port.replace_lease(replace(current, renew_time=self.clock.now()))
            self.fence.arm(taken_at, self.record.duration_seconds or self.ttl_seconds, where=self.where)
            return self.record

    def _lose(self, holder: str | None) -> str:
        """Someone else holds the lease: lose the fence (no further write) and say who."""
        lost = self.lost = f"{self.where} is now held by {holder or 'nobody'}"
        self.fence.lose(lost)
        return lost

    def check(self) -> None:
        """Raise ``LockLost`` if the keep-alive thread found the lease taken."""
        if self.lost:
            raise LockLost(self.lost)

    def confirm(self) -> None:
        """Raise ``LockLost`` unless the lease is still ours, reading it afresh (one GET): for a
        compare-and-swap refused by someone else's write, which may be a new holder's. A read
        that fails proves nothing either way; the fence keeps judging the writes."""
        self.check()
        if self.record is None:
            return
        try:
            current = self.port.read_lease(self.namespace, self.name)
        except ClusterError as exc:
            log.info("lease.confirm.failed", where=self.where, error=str(exc)[:200])
            return
        if current is None or current.holder != self.identity:
            lost = self._lose(current.holder if current else None)
            log.error("lease.lost", where=self.where, error=lost, seen="read")
            raise LockLost(lost)

    def keep_alive(self, interval: float | None = None) -> None:
        """Keep the lease from a daemon thread: renew every ``interval`` (default a third of the
        TTL) and in between follow the Lease through a watch (see the module docstring)."""
        if self._keepalive is not None:
            return
        period = interval if interval is not None else max(self.ttl_seconds / 3.0, 0.05)
        gap = min(RENEW_GAP, period)

        def loop() -> None:
            due = time.monotonic() + period      # the next renewal
            renewed = time.monotonic()           # the last renewal tried
            since: str | None = None             # last resourceVersion the watch saw since then
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= due:
                    renewed, due, since = now, now + period, None
                    try:
                        self.renew()
                    except LockLost as exc:
                        log.error("lease.lost", where=self.where, error=str(exc), seen="renewal")
                        return
                    except Exception as exc:  # noqa: BLE001 - keep trying until the TTL says otherwise
                        log.warning("lease.renew.failed", where=self.where, error=str(exc)[:200])
                    continue
                record = self.record
                if record is None:
                    return
                outcome, since = self._follow(due - now, since or record.resource_version)
                if outcome == "lost":
                    return
                if outcome == "failed":          # no watch: renew every period as without one
                    self._stop.wait(max(due - time.monotonic(), 0.0))
                elif outcome == "renew":         # deleted, or the watch broke: renew now
                    due = min(due, renewed + gap)
                    self._stop.wait(max(due - time.monotonic(), 0.0))

        self._keepalive = threading.Thread(target=loop, name="lease-keepalive", daemon=True)
        self._keepalive.start()

    def _follow(self, timeout: float, since: str) -> tuple[str, str]:
        """Wait on a watch of the Lease for up to ``timeout`` seconds after ``since``. Returns
        ``lost`` (another holder: the fence is lost), ``renew`` (deleted, broken, or ended much
        too early), ``failed`` (could not be opened) or ``ended``, with the resourceVersion to
        resume from."""
        opened = time.monotonic()
        try:
            watch = self.port.watch_lease(self.namespace, self.name, resource_version=since,
                                          timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - renewal goes on without the watch
            log.info("lease.watch.unavailable", where=self.where, error=str(exc)[:200])
            return "failed", since
        self._watch = watch
        if self._stop.is_set():  # released while the watch was being opened
            watch.stop()
        try:
            for event in watch:
                since = event.resource_version or since
                if event.type == "DELETED":
                    log.warning("lease.watch.deleted", where=self.where)
                    return "renew", since
                if event.record is not None and event.record.holder != self.identity:
                    lost = self._lose(event.record.holder)
                    log.error("lease.lost", where=self.where, error=lost, seen="watch")
                    return "lost", since
        except Exception as exc:  # noqa: BLE001 - a broken watch: renewing finds out where we stand
            log.info("lease.watch.broken", where=self.where, error=str(exc)[:200])
            return "renew", since
        finally:
            self._watch = None
            watch.stop()  # left early: end the request now
        if time.monotonic() - opened < min(RENEW_GAP, timeout) and not self._stop.is_set():
            return "renew", since  # the server ended it at once: do not spin re-opening it
        return "ended", since

    def release(self) -> bool:
        """Stop renewing and delete the lease if it is still ours. False if it was not."""
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
        if self._keepalive is not None:
            self._keepalive.join(timeout=5)
            self._keepalive = None
        with self._mutex:
            self.fence.disarm()
            current = self.port.read_lease(self.namespace, self.name)
            if current is None or current.holder != self.identity:
                return False
            try:
                released = self.port.delete_lease(self.namespace, self.name,
                                                  resource_version=current.resource_version)
            except Conflict:
                return False
            self.record = None
            log.info("lease.released", where=self.where, holder=self.identity)
            return released
