"""``--hostile-script``: JavaScript-only shells that attack the URLs they are given.

The site's side only: the script is in every shell (and nowhere else), names
each target once per way of reaching it, and the site's own helpers (the
redirect, the service worker) answer only while the option is on. Whether a
browser lets any of it through is tests/crawl/test_security_rendering.py's question.
"""

from __future__ import annotations

import json
import re

import pytest

from sitesim import hostile_script

from .webclient import fetch

TARGETS = ["http://127.0.0.1:6800", "http://127.0.0.1:9091/"]


def test_every_shell_carries_the_script_with_its_targets(fault_site):
    fault_site.set_faults(js_only_rate=1.0, hostile_script=",".join(TARGETS))
    page = fetch(fault_site.base_url + "/csa-iot_products/").text
    script = re.search(r'<script id="matter-hostile-script">(.*?)</script>', page, re.DOTALL)
    assert script is not None
    assert json.dumps(TARGETS) in script.group(1)
    for vector in hostile_script.VECTORS:  # every way is tried (WebRTC speaks STUN, not HTTP)
        assert vector.removeprefix("webrtc-") in script.group(1), vector
    assert page.index("matter-hostile-script") < page.index("product-root-loader")
    # not on pages that are not shells
    fault_site.set_faults(js_only_rate=0.0)
    assert "matter-hostile-script" not in fetch(fault_site.base_url + "/csa-iot_products/").text


def test_the_sites_helpers_answer_only_while_on(fault_site):
    target = "http://127.0.0.1:6800/matter-hostile/redirect-307"
    redirect = f"{fault_site.base_url}{hostile_script.REDIRECT_PATH}?to={target}&status=307"
    assert fetch(redirect).status == 404
    fault_site.set_faults(hostile_script=TARGETS[0])
    answer = fetch(redirect, method="POST")  # any method: a POST keeps its body through a 307
    assert (answer.status, answer.headers["location"]) == (307, target)
    worker = fetch(fault_site.base_url + hostile_script.SERVICE_WORKER_PATH)
    assert worker.status == 200
    assert worker.headers["content-type"] == "text/javascript"
    assert fetch(f"{fault_site.base_url}{hostile_script.REDIRECT_PATH}?to=file:///x").status == 404


def test_targets_must_be_http_urls():
    assert hostile_script.target_list("http://a:1, https://b/") == ("http://a:1", "https://b/")
    assert hostile_script.target_list("") == ()
    with pytest.raises(ValueError, match="not an http"):
        hostile_script.target_list("ftp://a")
