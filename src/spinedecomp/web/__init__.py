"""The clinic dashboard: a FastAPI app (JSON API under /api/v1 and server-rendered pages)
with accounts and roles, the clinic workflow and the live session view.

    from spinedecomp.web.app import create_app
    from spinedecomp.web.settings import WebSettings
    app = create_app(WebSettings(demo=True))
"""
