"""The web dashboard: static files shipped inside the package, served at /.

Every dashboard response carries a strict Content-Security-Policy: the page
renders text that other people's apps wrote (notification titles and bodies),
so even if a rendering bug slipped through, no inline or foreign script could
run and nothing could be loaded from or sent to another origin over HTTP.
"""
from __future__ import annotations

import os

import tornado.web

import notisync

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(notisync.__file__)), "static")

# connect-src 'self' covers this origin's ws:/wss: URLs in current browsers
# (CSP Level 3); listing ws: wss: would have let a script talk to any host.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def _security_headers(handler: tornado.web.RequestHandler) -> None:
    handler.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Frame-Options", "DENY")


class IndexHandler(tornado.web.RequestHandler):
    def set_default_headers(self) -> None:
        _security_headers(self)

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        with open(os.path.join(STATIC_DIR, "index.html"), "rb") as f:
            self.finish(f.read())


class StaticHandler(tornado.web.StaticFileHandler):
    def set_default_headers(self) -> None:
        _security_headers(self)

    def set_extra_headers(self, path: str) -> None:
        # Modules import each other without version tags, so the browser must
        # revalidate (cheap: ETag) rather than mix old and new files.
        self.set_header("Cache-Control", "no-cache")


routes = [
    (r"/", IndexHandler),
    (r"/static/(.*)", StaticHandler, {"path": STATIC_DIR}),
]
