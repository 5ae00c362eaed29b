"""Whether a Locust worker can reach the Redis URLs its master sent: a loopback URL (the master's embedded Redis,
or a server on the master's own machine) means nothing to a worker on another host."""

import ipaddress
import socket
from urllib.parse import urlsplit

from .topology import is_topology_url


def is_local_host(host: str) -> bool:
    """A name or address of this machine: loopback, or one of its interfaces' (binding to it succeeds)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, address in infos:
        if ipaddress.ip_address(address[0]).is_loopback:
            return True
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address[0], 0))
            return True
        except OSError:
            continue
    return False


def unreachable_loopback(url: str, master_host: str) -> bool:
    """True when `url` names a server on the master's own machine only (loopback, a unix socket) and the master
    is on another machine than this worker."""
    if not url or is_topology_url(url):
        return False
    if url.startswith("unix://"):
        machine_only = True
    else:
        host = urlsplit(url).hostname or "localhost"
        try:
            machine_only = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return machine_only and not is_local_host(master_host)
