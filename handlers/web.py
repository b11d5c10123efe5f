"""The web dashboard: static files shipped inside the package, served at /."""
from __future__ import annotations

import os

import tornado.web

import notisync

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(notisync.__file__)), "static")


class IndexHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        with open(os.path.join(STATIC_DIR, "index.html"), "rb") as f:
            self.finish(f.read())


routes = [
    (r"/", IndexHandler),
    (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": STATIC_DIR}),
]
