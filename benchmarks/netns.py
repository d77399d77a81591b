"""A second host on this machine: a network namespace reached over a veth pair, for the soak.

The host end keeps an address the embedded Redis binds to; the namespace end is the second
host's only interface. Cutting the link sets the host end down: the host's own address stays
reachable locally (its local route survives), the namespace loses Redis, and TCP connections
stall rather than reset, as over a real cable pulled out. Needs root and iproute2's `ip`.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass

SUBNET_PREFIX = "10.77"  # 10.77.N.0/24, N the first one no interface here uses


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *args] if namespace is None else ["ip", "netns", "exec", namespace, "ip", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def unavailable() -> str | None:
    """Why the second host cannot be made here (None when it can): a namespace and its link
    are made and removed for real, since being root is not enough in a container without
    CAP_SYS_ADMIN and CAP_NET_ADMIN."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, or the soak is skipped)"
    try:
        create(f"c{os.getpid()}").teardown()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"cannot make a network namespace and a veth pair: {exc}"
    return None


@dataclass
class SecondHost:
    """One namespace and its veth pair; `host_ip` is this machine's end, `peer_ip` the other's."""

    namespace: str
    host_if: str
    peer_if: str
    host_ip: str
    peer_ip: str
    cut: bool = False

    def exec_prefix(self) -> list[str]:
        """Prepend to a command line to run it on the second host (`ip netns exec` execs it
        in place: the pid we get is the command's own)."""
        return ["ip", "netns", "exec", self.namespace]

    def cut_link(self) -> None:
        _ip("link", "set", self.host_if, "down")
        self.cut = True

    def restore_link(self) -> None:
        _ip("link", "set", self.host_if, "up")
        self.cut = False

    def teardown(self) -> None:
        """Remove the pair and the namespace; safe to call twice or after a partial setup.
        Processes still inside keep the namespace alive: end them first."""
        _ip("link", "del", self.host_if, check=False)  # deletes both ends
        _ip("netns", "del", self.namespace, check=False)


def _free_subnet() -> int:
    used = _ip("-4", "-o", "addr", "show")
    for n in range(0, 256):
        if f" {SUBNET_PREFIX}.{n}." not in used:
            return n
    raise RuntimeError(f"no free {SUBNET_PREFIX}.N.0/24 subnet")


def create(tag: str | None = None) -> SecondHost:
    """Make the namespace and the link (names carry our pid: two runs never collide)."""
    tag = tag or str(os.getpid())
    n = _free_subnet()
    net = ipaddress.ip_network(f"{SUBNET_PREFIX}.{n}.0/24")
    host = SecondHost(namespace=f"rfsoak{tag}", host_if=f"rfh{tag}"[:15],
                      peer_if=f"rfp{tag}"[:15], host_ip=str(net[1]), peer_ip=str(net[2]))
    try:
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.host_if, "type", "veth", "peer", "name", host.peer_if)
        _ip("link", "set", host.peer_if, "netns", host.namespace)
        _ip("addr", "add", f"{host.host_ip}/24", "dev", host.host_if)
        _ip("link", "set", host.host_if, "up")
        _ip("addr", "add", f"{host.peer_ip}/24", "dev", host.peer_if, namespace=host.namespace)
        _ip("link", "set", host.peer_if, "up", namespace=host.namespace)
        _ip("link", "set", "lo", "up", namespace=host.namespace)
    except BaseException:
        host.teardown()
        raise
    return host
