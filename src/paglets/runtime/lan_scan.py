"""The opt-in /24 scan of LAN discovery (network.md §3.7 `--discover-scan`; cli.md §1.1).

Every address of the host's /24 is asked `GET /mesh/hello?nonce=<32 hex>` on the host's
port and on 8765, 64 at a time, 0.25 s each, **without** the key. A host answers with its
id and `proof = HMAC-SHA256(key, "hello" + nonce + host_id)` (`http_auth.mesh_hello`);
`on_found(host_id, url)` is called only when that proof is the one this host computes with
its own key (`Auth.proof`), so the key later goes only to hosts that showed they hold it. A
host without a key cannot check proofs and takes any well-formed answer (it has no key to
leak). Unanswered addresses cost their 0.25 s and nothing else.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SCAN_PARALLEL", "SCAN_PORT", "SCAN_TIMEOUT", "scan", "scan_urls"]

SCAN_PARALLEL, SCAN_TIMEOUT, SCAN_PORT = 64, 0.25, 8765
_HOST_ID = re.compile(r"[0-9a-f]{32}")

_log = logging.getLogger("paglets.discovery")

Prover = Callable[[str, str], "str | None"]  # (nonce, host_id) → expected proof, None: no key


def scan_urls(addresses: Sequence[str], port: int, scheme: str = "http") -> list[str]:
    """Every URL to ask: the /24 of each address (a loopback address: only itself), on
    `port` and 8765, except this host's own listeners."""
    ports = dict.fromkeys((port, SCAN_PORT))
    urls: dict[str, None] = {}
    for address in addresses:
        if address.startswith("127."):
            ips = [address]
        else:
            ips = [str(ip) for ip in ipaddress.IPv4Network(f"{address}/24", strict=False).hosts()]
        for ip in ips:
            for p in ports:
                if not (ip in addresses and p == port):
                    urls[f"{scheme}://{ip}:{p}"] = None
    return list(urls)


async def scan(urls: Sequence[str], prove: Prover, on_found: Callable[[str, str], None]) -> None:
    """Ask every URL once; `on_found(host_id, url)` for each host whose proof verifies."""
    import aiohttp

    nonce = uuid.uuid4().hex
    limit = asyncio.Semaphore(SCAN_PARALLEL)
    connector = aiohttp.TCPConnector(limit=SCAN_PARALLEL, ssl=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str) -> None:
            async with limit:
                body = await _hello(session, url, nonce)
            host_id = body.get("host_id") if isinstance(body, dict) else None
            if not isinstance(host_id, str) or not _HOST_ID.fullmatch(host_id):
                return
            expected, proof = prove(nonce, host_id), body.get("proof")  # type: ignore[union-attr]
            if expected is not None and not (
                isinstance(proof, str) and hmac.compare_digest(proof, expected)
            ):
                _log.debug("scan: %s did not prove it holds the mesh key", url)
                return
            on_found(host_id, url)

        await asyncio.gather(*(one(url) for url in urls))


async def _hello(session: Any, url: str, nonce: str) -> Any:
    import aiohttp

    try:
        async with asyncio.timeout(SCAN_TIMEOUT):
            async with session.get(f"{url}/mesh/hello", params={"nonce": nonce}) as answer:
                if answer.status != 200:
                    return None
                return await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        return None
