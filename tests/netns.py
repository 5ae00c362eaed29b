"""Separate network stacks on one machine for tests: one network namespace per host, each with one address on a
private /24, all joined by a bridge in a namespace of their own (the switch), so nothing touches the machine's own
network. `tc netem` on a host's link adds delay and loss where the kernel has it; `cut()` partitions a host by
taking its link off the bridge: its own stack sees its link up, and its packets go nowhere (no error, no RST)."""

import os
import shutil
import subprocess
import uuid


def netns_unavailable() -> str:
    """Why this machine cannot run namespace tests, or '' when it can."""
    if not shutil.which("ip") or not shutil.which("tc"):
        return "the ip and tc commands (iproute2) are not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"qs-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Hosts:
    """`Hosts(["redis", "master", ...])`: host name -> address 10.X.Y.n, namespaces named after this instance."""

    def __init__(self, names: list[str], subnet: str = "10.213.77"):
        self.tag = uuid.uuid4().hex[:6]
        self.subnet = subnet
        self.switch = f"qs-sw-{self.tag}"
        self.names = list(names)
        self.address = {name: f"{subnet}.{i + 1}" for i, name in enumerate(names)}
        self.made: list[str] = []

    def namespace(self, name: str) -> str:
        return f"qs-{self.names.index(name)}-{name[:8]}-{self.tag}"

    def __enter__(self) -> "Hosts":
        try:
            _ip("netns", "add", self.switch)
            self.made.append(self.switch)
            self._in(self.switch, "ip", "link", "add", "br0", "type", "bridge")
            self._in(self.switch, "ip", "link", "set", "br0", "up")
            for i, name in enumerate(self.names):
                ns = self.namespace(name)
                _ip("netns", "add", ns)
                self.made.append(ns)
                host_end, switch_end = f"qh{i}{self.tag}", self._switch_end(name)
                _ip("link", "add", host_end, "type", "veth", "peer", "name", switch_end)
                _ip("link", "set", host_end, "netns", ns)
                _ip("link", "set", switch_end, "netns", self.switch)
                self._in(self.switch, "ip", "link", "set", switch_end, "master", "br0")
                self._in(self.switch, "ip", "link", "set", switch_end, "up")
                self._in(ns, "ip", "link", "set", host_end, "name", "eth0")
                self._in(ns, "ip", "addr", "add", f"{self.address[name]}/24", "dev", "eth0")
                self._in(ns, "ip", "link", "set", "eth0", "up")
                self._in(ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _in(self, ns: str, *command: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, *command], check=True, capture_output=True, text=True)

    def command(self, name: str, *command: str) -> list[str]:
        """`command` run on host `name`."""
        return ["ip", "netns", "exec", self.namespace(name), *command]

    def _switch_end(self, name: str) -> str:
        return f"qs{self.names.index(name)}{self.tag}"

    def netem(self, name: str, *spec: str) -> bool:
        """`tc qdisc replace ... netem SPEC` on the host's link, e.g. netem("drain", "delay", "2ms", "loss", "0.1%");
        False where the kernel has no netem (sch_netem not loaded)."""
        done = subprocess.run(["ip", "netns", "exec", self.namespace(name), "tc", "qdisc", "replace", "dev", "eth0",
                               "root", "netem", *spec], capture_output=True, text=True)
        return done.returncode == 0

    def cut(self, name: str) -> None:
        self._in(self.switch, "ip", "link", "set", self._switch_end(name), "nomaster")

    def reconnect(self, name: str) -> None:
        self._in(self.switch, "ip", "link", "set", self._switch_end(name), "master", "br0")

    def __exit__(self, *_):
        for ns in reversed(self.made):  # a namespace's veth ends go with it
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []
