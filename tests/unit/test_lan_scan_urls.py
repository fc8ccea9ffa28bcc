"""Which URLs `--discover-scan` asks: a pure function, so nothing is sent. The /24 case
uses TEST-NET-1 (192.0.2.0/24, RFC 5737), which is never routed."""

from __future__ import annotations

from paglets.runtime import lan_scan


def test_scan_urls_cover_the_24_on_both_ports_but_not_this_host() -> None:
    urls = lan_scan.scan_urls(["192.0.2.11"], 9000)
    assert len(urls) == 254 * 2 - 1
    assert "http://192.0.2.11:9000" not in urls
    assert "http://192.0.2.11:8765" in urls
    assert "http://192.0.2.254:9000" in urls and "http://192.0.2.255:9000" not in urls
    assert lan_scan.scan_urls(["127.0.0.1"], 8765, "https") == []
    assert lan_scan.scan_urls(["127.0.0.1"], 8766) == ["http://127.0.0.1:8765"]
